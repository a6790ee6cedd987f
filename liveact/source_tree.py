"""Where the services and the benchmarks come from: the source tree, never the wheel.

The ``liveact`` wheel installs one top-level package, the library (and its CLI). The gRPC services
(``services/``) and the benchmarks (``bench/``) are applications on top of it: they run from a source
checkout (``./scripts/setup``) or from the service images, which copy both next to the installed
wheel and put that folder on ``PYTHONPATH``. Installing them as top-level ``services`` and ``bench``
packages would claim two generic names in everyone's site-packages.

Three CLI commands use them: ``liveact serve`` and ``liveact up`` (the services) and ``liveact bench``.
``require`` makes a tree importable before such a command imports it, and ``child_env`` lets a child
process (``python -m services.generator``) find it from any working directory.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import liveact

SOURCE_PACKAGES = ("services", "bench")  # the trees next to liveact/ in a checkout, not in the wheel
CHECKOUT_MARKER = "pyproject.toml"


class SourceTreeMissing(SystemExit):
    """A command needs ``services/`` or ``bench/`` and neither a checkout nor an image provides it."""


def checkout_root() -> Path | None:
    """The repository root when ``liveact`` is imported from a source checkout (editable install or
    the working directory), else None (an installed wheel)."""
    root = Path(liveact.__file__).resolve().parent.parent
    if not (root / CHECKOUT_MARKER).is_file():
        return None
    if not all((root / name / "__init__.py").is_file() for name in SOURCE_PACKAGES):
        return None
    return root


def require(package: str, command: str) -> None:
    """Make ``package`` (``services`` or ``bench``) importable for ``liveact COMMAND``, or exit with a
    message that says where it comes from.

    A checkout's own tree wins over anything else of that name on ``sys.path``; without a checkout the
    package must already be importable (the images set ``PYTHONPATH``).
    """
    if package not in SOURCE_PACKAGES:
        raise ValueError(f"unknown source package {package!r}: one of {SOURCE_PACKAGES}")
    root = checkout_root()
    if root is not None:
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        return
    if importlib.util.find_spec(package) is not None:
        return
    raise SourceTreeMissing(
        f"`liveact {command}` runs {package}/ from the LiveAct source tree, which the liveact wheel does not "
        f"install: run it in a checkout (git clone, then ./scripts/setup) or in a LiveAct service image, or put "
        f"the folder holding {package}/ on PYTHONPATH"
    )


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the checkout root first on ``PYTHONPATH`` (unchanged outside a checkout), so that
    ``python -m services.<name>`` started with it runs this tree's services from any directory."""
    out = dict(env)
    root = checkout_root()
    if root is None:
        return out
    paths = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(root)]
    out["PYTHONPATH"] = os.pathsep.join([str(root), *paths])
    return out
