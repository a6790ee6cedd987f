"""Shared fixtures: the golden fixture directory."""

from __future__ import annotations

import pytest

from liveact.cli.parity import default_golden_dir

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
