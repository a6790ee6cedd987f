"""Shared fixtures: the golden fixture directory; a private Redis and the generator's two peer services."""

from __future__ import annotations

import pytest
from generator_helpers import FACE
from redis_server import RedisServer, require_redis_server
from servers import service_process

from liveact.cli.parity import default_golden_dir

pytest_plugins = ["process_guard", "pytester"]  # a test that starts a process must be marked integration

GOLDEN_NAME = "liveact-parity-small"


@pytest.fixture(scope="session")
def golden_dir():
    d = default_golden_dir()
    if not (d / f"{GOLDEN_NAME}.json").exists() or not (d / f"{GOLDEN_NAME}.safetensors").exists():
        pytest.skip(
            f"golden fixture {GOLDEN_NAME}.{{json,safetensors}} not found in {d}: "
            "set LIVEACT_GOLDEN_DIR to the directory holding it (CI has it in ../shared/golden)"
        )
    return d


@pytest.fixture(scope="module")
def redis():
    """A private redis-server on a free port, for one test module (skipped where none is installed)."""
    require_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def peers():
    """An audio encoder and a decoder process, for one test module: (encoder address, decoder address)."""
    with service_process("audio_encoder") as (enc, _), service_process("decoder") as (dec, _):
        yield enc, dec


@pytest.fixture(scope="module")
def image() -> bytes:
    return FACE
