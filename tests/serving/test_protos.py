"""The gRPC stubs are generated from protos/ and current; tensors travel exactly."""

from __future__ import annotations

import pytest
import torch

from liveact import protogen
from services.common.tensors import from_proto, to_proto


def test_committed_stubs_are_current():
    assert protogen.stale_files() == [], "run: python -m liveact.protogen"


def test_stubs_import_by_package_path():
    from liveact.v1 import audio_encoder_pb2_grpc, decoder_pb2_grpc, generator_pb2, generator_pb2_grpc

    assert generator_pb2.DESCRIPTOR.package == "liveact.v1"
    for module, service in (
        (generator_pb2_grpc, "Generator"),
        (audio_encoder_pb2_grpc, "AudioEncoder"),
        (decoder_pb2_grpc, "Decoder"),
    ):
        assert hasattr(module, f"{service}Servicer")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.uint8, torch.int64])
def test_tensor_round_trip_is_exact(dtype):
    t = (torch.randn(2, 3, 4) * 100).to(dtype)
    back = from_proto(to_proto(t))
    assert back.dtype == dtype and torch.equal(back, t)


def test_bad_tensor_messages_are_refused():
    msg = to_proto(torch.zeros(2, 3))
    msg.shape[:] = [2, 4]
    with pytest.raises(ValueError, match="needs 32"):
        from_proto(msg)
    msg.dtype = "complex64"
    with pytest.raises(ValueError, match="not one of"):
        from_proto(msg)
    with pytest.raises(ValueError, match="exceeds the limit"):
        from_proto(to_proto(torch.zeros(10)), max_elements=5)
