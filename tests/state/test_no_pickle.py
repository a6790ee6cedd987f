"""Session state never goes through pickle: a checkpoint read back from Redis must not run code.

A source scan of the code that writes or reads session state (comments and strings are ignored, so
docstrings may say "never pickle"): no pickle-family module (pickle, cPickle, _pickle, dill,
cloudpickle, marshal, shelve, joblib), no ``torch.load`` without ``weights_only=True``, no
``numpy.load`` with ``allow_pickle`` enabled. Plus the behaviour: the codec refuses pickle bytes.
"""

from __future__ import annotations

import ast
import io
import os
import pickle
import re
import tokenize
from pathlib import Path

import pytest
import torch

from liveact.state import codec

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [
    "liveact/state",
    "services/generator",
    "liveact/memory",
    "liveact/sampling/noise.py",
    "liveact/vae/streaming.py",
    "services/audio_encoder",
    "services/decoder",
]
FORBIDDEN_MODULES = re.compile(r"\b(c?pickle|_pickle|cloudpickle|dill|marshal|shelve|joblib)\b", re.IGNORECASE)
TORCH = {"torch", "torch.serialization"}
NUMPY = {"np", "numpy"}


def source_files() -> list[Path]:
    files = []
    for rel in SCANNED:
        path = ROOT / rel
        assert path.exists(), f"{rel} is gone: update SCANNED in {Path(__file__).name}"
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return files


def code_only(source: str) -> str:
    """The source with comments and string literals (docstrings included) blanked out."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING) or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            continue
        out.append(tok.string)
    return " ".join(out)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _keyword_is(call: ast.Call, name: str, value: object) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def violations(source: str, name: str = "<source>") -> list[str]:
    found = []
    for match in FORBIDDEN_MODULES.finditer(code_only(source)):
        found.append(f"{name}: uses {match.group(0)!r}")
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> "torch.load" / "numpy.load" for `from torch import load`
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in TORCH | {"numpy"}:
            for alias in node.names:
                if alias.name == "load":
                    aliases[alias.asname or alias.name] = f"{node.module}.load"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = _dotted(node.func)
        owner, _, attr = aliases.get(func, func).rpartition(".")
        if attr != "load":
            continue
        line = f"{name}:{node.lineno}"
        if owner in TORCH and not _keyword_is(node, "weights_only", True):
            found.append(f"{line}: torch.load without weights_only=True")
        if owner in NUMPY and any(
            k.arg == "allow_pickle" and not _keyword_is(node, "allow_pickle", False) for k in node.keywords
        ):
            found.append(f"{line}: numpy.load with allow_pickle")
    return found


def test_scanned_code_never_unpickles():
    files = source_files()
    assert Path(__file__).resolve() not in files
    assert ROOT / "liveact/state/codec.py" in files and len(files) > 10
    found = [v for f in files for v in violations(f.read_text(), str(f.relative_to(ROOT)))]
    assert not found, "pickle-capable loading in session-state code:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "bad",
    [
        "import pickle",
        "import cPickle as p",
        "from dill import loads",
        "import marshal",
        "x = torch.load(f)",
        "x = torch.load(f, weights_only=False)",
        "from torch import load\nx = load(f)",
        "x = np.load(f, allow_pickle=True)",
        "x = numpy.load(f, allow_pickle=flag)",
    ],
)
def test_the_scan_catches(bad):
    assert violations(bad)


@pytest.mark.parametrize(
    "fine",
    [
        '"""Never pickle, never torch.load."""',
        "# no pickle here",
        "x = torch.load(f, weights_only=True, map_location='cpu')",
        "x = np.load(f)",
        "x = np.load(f, allow_pickle=False)",
        "x = safetensors.torch.load(data)",
        "x = json.loads(s)",
    ],
)
def test_the_scan_allows(fine):
    assert violations(fine) == []


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))  # runs on unpickling


def test_unpack_refuses_pickle_payloads_without_running_them(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(codec.CodecError):
        codec.unpack(pickle.dumps(_Payload(marker)))
    assert not marker.exists()
    buf = io.BytesIO()
    torch.save({"x": torch.zeros(2)}, buf)  # torch's own (zip + pickle) format
    with pytest.raises(codec.CodecError):
        codec.unpack(buf.getvalue())
