"""A generator refuses at start a configuration whose memory plan does not fit, and sessions larger than planned.

The checks run on CUDA against the GPU's free memory; here ``--memory-budget-gb`` stands for it (the same code
path after the number is read). The tiny preset at 64x64 in fp32 peaks at 18.4 MB with one session, 26.5 MB
with two and 34.6 MB with four (``liveact plan --preset tiny``), so a 30 MB budget fits two sessions of four.
"""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from generator_helpers import END, config
from servers import ROOT, service_process

from liveact.plan.table import GIB
from services.generator.memory_check import check_memory
from services.generator.settings import GeneratorSettings

BUDGET_GB = f"{30e6 / GIB:.6f}"  # 30 MB
PEERS = ("--audio-encoder", "127.0.0.1:9", "--decoder", "127.0.0.1:9")


def settings(*args: str) -> GeneratorSettings:
    return GeneratorSettings.parse([*PEERS, "--memory-budget-gb", BUDGET_GB, *args])


def test_the_plan_is_checked_against_the_budget() -> None:
    assert check_memory(GeneratorSettings.parse(list(PEERS))) is None  # CPU, no budget: nothing planned
    check = check_memory(settings("--max-sessions", "2"))
    assert check is not None and check.fits and check.max_sessions == 2
    assert check.case.size == "64x64" and check.case.kv_cache == "fp32"


@pytest.mark.integration
def test_a_configuration_that_does_not_fit_is_refused_at_start() -> None:
    cmd = [sys.executable, "-m", "services.generator", "--port", "0", *PEERS, "--memory-budget-gb", BUDGET_GB]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=120, text=True)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "refusing to start: this configuration does not fit" in proc.stderr
    assert "4 session(s) needs 33.0 MiB on rank 0; 28.6 MiB available" in proc.stderr
    assert "What fits: --max-sessions 2" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
def test_sessions_larger_than_planned_are_invalid_argument() -> None:
    args = (*PEERS, "--memory-budget-gb", BUDGET_GB, "--max-sessions", "2")
    with service_process("generator", *args) as (gen, _):
        with grpc.insecure_channel(gen) as ch:
            from liveact.v1 import generator_pb2_grpc

            stub = generator_pb2_grpc.GeneratorStub(ch)
            with pytest.raises(grpc.RpcError) as err:
                list(stub.Animate(iter([config(width=128, height=64), END])))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "size 128x64 is 8192 pixels, more than this generator's memory is planned for (64x64" in err.value.details()
