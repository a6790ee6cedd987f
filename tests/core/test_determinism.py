"""CUDA determinism: what ``liveact.determinism.apply`` pins, and that the services pin it before CUDA work."""

from __future__ import annotations

import pytest
import torch

from liveact import determinism


@pytest.fixture
def restore(monkeypatch):
    """Leave the process's torch flags and environment as they were."""
    monkeypatch.delenv(determinism.CUBLAS_ENV, raising=False)
    before = determinism.current()
    yield
    torch.backends.cudnn.deterministic = before.cudnn_deterministic
    torch.backends.cudnn.benchmark = before.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = before.tf32_matmul
    torch.backends.cudnn.allow_tf32 = before.tf32_cudnn
    torch.use_deterministic_algorithms(before.deterministic_algorithms)


def test_cpu_is_left_alone(restore):
    before = determinism.current()
    assert determinism.apply("cpu") is None
    assert determinism.current() == before


def test_cuda_pins_kernels_workspace_and_precision(restore, monkeypatch):
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True  # torch's default for convolutions
    policy = determinism.apply("cuda:1")  # the flags are process-wide; no GPU is touched to set them
    assert policy == determinism.DeterminismPolicy(
        cublas_workspace=":4096:8", cudnn_deterministic=True, cudnn_benchmark=False,
        tf32_matmul=False, tf32_cudnn=False, deterministic_algorithms=True,
    )  # fmt: skip
    assert determinism.current() == policy
    monkeypatch.setenv(determinism.CUBLAS_ENV, ":16:8")  # an operator's own (also deterministic) setting stays
    assert determinism.apply("cuda").cublas_workspace == ":16:8"


def test_the_decoder_pins_it_for_its_device_before_loading(monkeypatch):
    from opentelemetry import trace

    from services.common.telemetry import Tracing
    from services.decoder import server
    from services.decoder.settings import DecoderSettings

    calls = []
    monkeypatch.setattr(server.determinism, "apply", lambda device: calls.append(device))
    tracing = Tracing(trace.get_tracer(__name__), enabled=False)
    decoder = server.Decoder(DecoderSettings.parse(["--device", "cpu"]), tracing)
    decoder._load()
    assert calls == ["cpu"]
