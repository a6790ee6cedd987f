"""Typed server settings, read once from flags with environment fallbacks, validated at start.

Every service takes the same server flags; each flag ``--x-y`` falls back to ``LIVEACT_X_Y`` (the
service may add its own). A bad value stops the process at start with a message naming the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
from dataclasses import dataclass
from typing import Any, TypeVar

S = TypeVar("S", bound="ServerSettings")

_FIELD_COMMENT = re.compile(r"^\s+(\w+): [^#]*#\s*(.+)$")  # "    name: type = default  # what it is"


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"  # address to listen on (0.0.0.0 in a container)
    port: int = 50051  # 0 = any free port (logged and written to --port-file)
    port_file: str = ""  # write the bound port here once serving (for tests and supervisors)
    max_message_mb: int = 32  # gRPC send/receive limit per message
    grace_s: float = 20.0  # SIGTERM: time to finish in-flight streams before they are cancelled
    keepalive_s: float = 30.0  # server pings idle connections this often (hour-long streams)
    keepalive_timeout_s: float = 10.0  # a ping unanswered this long closes the connection
    reflection: bool = False  # gRPC server reflection (for grpcurl)
    log_level: str = "INFO"  # DEBUG, INFO, WARNING or ERROR (JSON lines on stderr)
    device: str = "cpu"  # torch device: cpu, cuda, cuda:N
    # observability (services/common/telemetry.py): off by default, and then it costs nothing
    otel_endpoint: str = ""  # OTLP/gRPC collector for traces and metrics, e.g. http://otel-collector:4317
    otel_export_s: float = 15.0  # how often metrics are pushed to --otel-endpoint
    trace_ratio: float = 1.0  # share of chunk traces recorded (the generator decides; the others follow it)
    metrics_port: int = 0  # serve Prometheus metrics at http://host:PORT/metrics (0 = off)

    def validate(self) -> None:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"--port {self.port} must be 0..65535")
        if self.max_message_mb < 1:
            problems.append(f"--max-message-mb {self.max_message_mb} must be >= 1")
        if self.grace_s < 0 or self.keepalive_s <= 0 or self.keepalive_timeout_s <= 0:
            problems.append("--grace-s must be >= 0 and --keepalive-s / --keepalive-timeout-s > 0")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            problems.append(f"--log-level {self.log_level!r} must be DEBUG, INFO, WARNING or ERROR")
        if self.otel_endpoint and not self.otel_endpoint.startswith(("http://", "https://")):
            problems.append(f"--otel-endpoint {self.otel_endpoint!r} must be http://host:port or https://host:port")
        if self.otel_export_s <= 0 or not 0.0 <= self.trace_ratio <= 1.0:
            problems.append("--otel-export-s must be > 0 and --trace-ratio within 0..1")
        if not 0 <= self.metrics_port <= 65535 or (self.metrics_port and self.metrics_port == self.port):
            problems.append(f"--metrics-port {self.metrics_port} must be 0 (off) or a port other than --port")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * 1024 * 1024

    @classmethod
    def parse(cls: type[S], argv: list[str] | None = None, description: str = "") -> S:
        """Flags override ``LIVEACT_*`` environment variables, which override the defaults."""
        parser = argparse.ArgumentParser(description=description)
        explained = field_help(cls)
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            env = "LIVEACT_" + f.name.upper()
            default = _from_env(env, f.type, f.default)
            what = explained.get(f.name, "")
            what = what.replace("%", "%%") + " " if what else ""  # argparse formats help with %
            if f.type in ("bool", bool):
                parser.add_argument(
                    flag, action=argparse.BooleanOptionalAction, default=default, help=f"{what}(env {env})"
                )
            else:
                parser.add_argument(
                    flag, type=_caster(f.type), default=default, help=f"{what}(env {env}; default {default!r})"
                )
        args = parser.parse_args(argv)
        settings = cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
        try:
            settings.validate()
        except ValueError as exc:
            parser.error(str(exc))
        return settings


def field_help(cls: type) -> dict[str, str]:
    """Each field's trailing ``# comment`` in the settings classes' source (subclasses win): its --help."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):  # no source (e.g. a frozen build): flags keep their env / default text
            continue
        for line in lines:
            match = _FIELD_COMMENT.match(line)
            if match:
                out[match[1]] = match[2].strip()
    return out


def _caster(kind: Any):
    return {"int": int, "float": float, "str": str}.get(kind if isinstance(kind, str) else kind.__name__, str)


def _from_env(name: str, kind: Any, default: Any) -> Any:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if kind in ("bool", bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    try:
        return _caster(kind)(raw)
    except ValueError:
        raise SystemExit(f"environment variable {name}={raw!r} is not a valid {kind}") from None
