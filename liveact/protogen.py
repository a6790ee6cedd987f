"""Generate the Python gRPC stubs from ``protos/`` (the single source of truth).

    python -m liveact.protogen            # rewrite liveact/v1/*_pb2*.py
    python -m liveact.protogen --check    # exit 1 if the committed stubs are stale

The proto package ``liveact.v1`` lives at ``protos/liveact/v1``, so the stubs land at
``liveact/v1`` and import each other as ``liveact.v1.x_pb2``: no import rewriting, never hand-edited.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("liveact") / "v1"
STUB_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Run protoc for every proto into ``out_root``; returns the stub files written."""
    from grpc_tools import protoc  # dev dependency: only the generator needs it

    protos = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = ["protoc", f"-I{PROTO_ROOT}", f"--python_out={out_root}", f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}", *protos]  # fmt: skip
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {protos}")
    return sorted(p for s in STUB_SUFFIXES for p in (out_root / PACKAGE_DIR).glob(f"*{s}"))


def stale_files() -> list[str]:
    """Stub files that differ from a fresh generation, are missing, or have no proto any more."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p for p in generate(Path(tmp))}
        committed = {p.name: p for s in STUB_SUFFIXES for p in (ROOT / PACKAGE_DIR).glob(f"*{s}")}
        names = set(fresh) | set(committed)
        both = set(fresh) & set(committed)
        same = {n for n in both if filecmp.cmp(fresh[n], committed[n], shallow=False)}
        return sorted(names - same)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the committed stubs are current")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"stale gRPC stubs {stale}: run python -m liveact.protogen", file=sys.stderr)
            return 1
        return 0
    for path in generate(ROOT):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
