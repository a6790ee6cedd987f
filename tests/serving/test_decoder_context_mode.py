"""``DecodeConfig.decode_mode`` CONTEXT: the public implementation's decode behind the Decode stream.

In CONTEXT mode each chunk is decoded from a fresh VAE cache together with the previous chunk's last
3 clean latents (``StreamingDecoder.decode_with_context``), so the stream's state is those latents
only. In process (``DecodeStream``, tiny VAE, 64x64, chunks of 6, 8 and 8 latent frames as a session
sends them): the frames equal ``AnimationSession(decode="context")``'s chaining bit for bit; a stream
resumed from a snapshot decodes what an uninterrupted one does; the snapshot is a few KiB where the
STREAM mode's cache is megabytes; a state of the other mode is INVALID_ARGUMENT; keep_frames,
first_output_frame, JPEG and FMP4_H264 behave as in STREAM mode. The gRPC round trip through a real
server is in ``test_decoder_snapshot.py`` (it reuses that module's server).
"""

from __future__ import annotations

import io

import decoder_helpers
import grpc
import numpy as np
import pytest
import torch
from decoder_helpers import MAX_LATENTS, latent_chunk, raw_frames, tiny_vae_decoder
from PIL import Image

from liveact.media import frames_to_uint8, probe
from liveact.v1 import common_pb2, decoder_pb2
from liveact.vae import StreamingDecoder, get_vae_preset
from services.common import snapshot
from services.common.errors import RequestError
from services.decoder.server import RESPONSE_OVERHEAD
from services.decoder.stream import SNAPSHOT_KIND, DecodeStream, StreamFormat, context_state_nbytes, parse_config

SIZE = 64  # 8x8 latents
FPS = 20
CHUNKS = (6, 8, 8)  # latent frames per chunk, as a session sends them: 21, 32 and 32 video frames
FIRST_FRAMES = (0, 21, 53)
TOTAL_FRAMES = 85
CONTEXT_LATENTS = 3  # VaeConfig.decode_context_latents
SNAPSHOT_OVERHEAD = 64 * 1024  # bytes a snapshot may add to its tensors (safetensors header, integers)
MAX_RESPONSE_BYTES = 8 << 20  # room for a STREAM snapshot at 64x64 (~2.2 MiB)
# wan2.1 at 416x720 in bfloat16: 16 channels x 3 latents x (416/8) x (720/8) cells x 2 bytes
WAN21_CONTEXT_BYTES_416X720 = 16 * 3 * 52 * 90 * 2
CONTEXT = decoder_pb2.CONTEXT
STREAM = decoder_pb2.STREAM


@pytest.fixture(scope="module")
def vae_decoder() -> StreamingDecoder:
    return tiny_vae_decoder()


def new_stream(decoder: StreamingDecoder, mode: int = CONTEXT, state: bytes = b"", **fmt_fields) -> DecodeStream:
    return decoder_helpers.new_stream(decoder, SIZE, FPS, mode, MAX_RESPONSE_BYTES, state, **fmt_fields)


def chunk(index: int, z: torch.Tensor, **extra) -> decoder_pb2.LatentChunk:
    return latent_chunk(index, FIRST_FRAMES[index], z, **extra)


def raw(responses: list[decoder_pb2.DecodeResponse]) -> np.ndarray:
    return raw_frames(responses, SIZE)


def random_latents(dtype: torch.dtype, seed: int = 77) -> list[torch.Tensor]:
    """Normalised latents per chunk, as the generator sends them (bfloat16 for the real model)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 16, n, SIZE // 8, SIZE // 8, generator=g).to(dtype) for n in CHUNKS]


@pytest.fixture(scope="module")
def latents() -> list[torch.Tensor]:
    return random_latents(torch.bfloat16)


@pytest.fixture(scope="module")
def reference(vae_decoder, latents) -> list[np.ndarray]:
    """(T, H, W, 3) uint8 per chunk, chained as ``AnimationSession(decode="context")`` does."""
    return context_chain(vae_decoder, latents)


def context_chain(decoder: StreamingDecoder, latents: list[torch.Tensor]) -> list[np.ndarray]:
    out, context = [], None
    for z in latents:
        frames, context = decoder.decode_with_context(context, z.float())
        out.append(frames_to_uint8(frames))
    return out


def jpeg_of(frame: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def snap(stream: DecodeStream) -> common_pb2.StreamSnapshot:
    return stream.snapshot(common_pb2.SnapshotRequest(id=3)).snapshot


def pack_context_state(tensors: dict[str, torch.Tensor]) -> bytes:
    return snapshot.pack(SNAPSHOT_KIND, tensors, {"vae_preset": "tiny", "decode_mode": "CONTEXT"})


# -- decoding --------------------------------------------------------------------------------------


def test_context_frames_equal_decode_with_context_chaining_bitwise(vae_decoder, latents, reference):
    stream = new_stream(vae_decoder)
    got = [raw(stream.decode(chunk(i, z))) for i, z in enumerate(latents)]
    assert [len(g) for g in got] == [21, 32, 32]
    for g, want in zip(got, reference, strict=True):
        assert np.array_equal(g, want)
    # the mode matters: the first chunk (no context yet) is STREAM's, the later ones are not
    streamed = new_stream(vae_decoder, STREAM)
    plain = [raw(streamed.decode(chunk(i, z))) for i, z in enumerate(latents)]
    assert np.array_equal(plain[0], got[0])
    assert not np.array_equal(plain[1], got[1])


def test_keep_frames_and_first_output_frame_as_in_stream_mode(vae_decoder, latents, reference):
    stream = new_stream(vae_decoder, first_output_frame=30)
    responses = [stream.decode(chunk(i, z, keep_frames=10 if i == 2 else 0)) for i, z in enumerate(latents)]
    numbering = [(r.frames.chunk_index, r.frames.first_frame, r.frames.frame_count) for rs in responses for r in rs]
    assert numbering == [(0, 21, 0), (1, 30, 23), (2, 53, 10)]
    assert np.array_equal(np.concatenate([raw(rs) for rs in responses]), np.concatenate(reference)[30:63])


@pytest.mark.integration
def test_jpeg_and_fmp4_carry_the_context_frames(vae_decoder, latents, reference, tmp_path):
    jpeg = new_stream(vae_decoder, output_format=common_pb2.JPEG)
    files = [f for i, z in enumerate(latents[:2]) for r in jpeg.decode(chunk(i, z)) for f in r.frames.frames]
    assert files == [jpeg_of(frame) for frame in np.concatenate(reference[:2])]  # Pillow's JPEG of each frame
    mp4 = new_stream(vae_decoder, output_format=common_pb2.FMP4_H264)
    pieces = [r.frames.fmp4 for i, z in enumerate(latents) for r in mp4.decode(chunk(i, z))]
    pieces += [r.frames.fmp4 for r in mp4.finish()]
    path = tmp_path / "context.mp4"
    path.write_bytes(b"".join(pieces))
    assert probe(path, count_frames=True).video.frame_count == TOTAL_FRAMES


def test_parse_config_reads_the_decode_mode(vae_decoder):
    def parse(mode: int) -> StreamFormat:
        msg = decoder_pb2.DecodeConfig(vae_preset="tiny", width=SIZE, height=SIZE, fps=FPS, decode_mode=mode)
        return parse_config(msg, vae_decoder.cfg, MAX_LATENTS, MAX_RESPONSE_BYTES)

    assert parse(decoder_pb2.DECODE_MODE_UNSPECIFIED).decode_mode == CONTEXT  # the library's default mode
    assert parse(STREAM).mode_name == "STREAM" and parse(CONTEXT).mode_name == "CONTEXT"
    with pytest.raises(RequestError, match="decode_mode 7 is not one of DECODE_MODE_UNSPECIFIED, STREAM, CONTEXT"):
        parse(7)


# -- snapshots -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("split", "dtype"), [(0, torch.bfloat16), (1, torch.bfloat16), (2, torch.float32)])
def test_resumed_context_stream_decodes_the_same_frames_bitwise(vae_decoder, split, dtype):
    """Snapshot after chunk ``split - 1`` (0: before any chunk), resume, the rest: as uninterrupted."""
    zs = random_latents(dtype)
    want = np.concatenate(context_chain(vae_decoder, zs))
    a = new_stream(vae_decoder)
    head = [raw(a.decode(chunk(i, z))) for i, z in enumerate(zs[:split])]
    s = snap(a)
    assert s.next_frame == (FIRST_FRAMES[split] if split else 0)
    context = snapshot.unpack(s.state, SNAPSHOT_KIND).tensors.get("context")
    if split:  # exact either way: bfloat16 when the latents came as bfloat16, else float32
        assert context is not None and context.dtype == dtype
        assert context.shape == (1, 16, CONTEXT_LATENTS, SIZE // 8, SIZE // 8)
    else:
        assert context is None
    b = new_stream(vae_decoder, state=s.state)
    tail = [raw(b.decode(chunk(i, z))) for i, z in enumerate(zs[split:], split)]
    assert np.array_equal(np.concatenate(head + tail), want)
    # the original stream goes on unaffected by its snapshot
    if split < len(zs):
        assert np.array_equal(raw(a.decode(chunk(split, zs[split]))), tail[0])


def test_context_snapshot_is_a_few_latents_not_the_vae_cache(vae_decoder, latents):
    """At 64x64 (tiny): the CONTEXT state is 3 latents (6 KiB in bfloat16), the STREAM one ~2.2 MiB."""
    sizes = {}
    for mode in (CONTEXT, STREAM):
        stream = new_stream(vae_decoder, mode)
        for i, z in enumerate(latents[:2]):
            stream.decode(chunk(i, z))
        sizes[mode] = len(snap(stream).state)
    latent_bytes = context_state_nbytes(vae_decoder.cfg, SIZE, SIZE)
    assert latent_bytes == 16 * CONTEXT_LATENTS * (SIZE // 8) ** 2 * 2
    assert latent_bytes < sizes[CONTEXT] < latent_bytes + SNAPSHOT_OVERHEAD
    assert sizes[CONTEXT] * 100 < sizes[STREAM]


def test_wan21_context_state_at_416x720_is_449280_bytes_in_bf16():
    cfg = get_vae_preset("wan2.1")
    assert (cfg.z_dim, cfg.spatial_stride, cfg.decode_context_latents) == (16, 8, CONTEXT_LATENTS)
    assert context_state_nbytes(cfg, width=720, height=416) == WAN21_CONTEXT_BYTES_416X720 == 449_280
    shape = (1, cfg.z_dim, cfg.decode_context_latents, 416 // cfg.spatial_stride, 720 // cfg.spatial_stride)
    meta = torch.empty(shape, dtype=torch.bfloat16, device="meta")  # what state_dict() holds there
    assert meta.numel() * meta.element_size() == WAN21_CONTEXT_BYTES_416X720
    default_response = 32 * 1024 * 1024 - RESPONSE_OVERHEAD  # --max-message-mb 32
    assert WAN21_CONTEXT_BYTES_416X720 + SNAPSHOT_OVERHEAD < default_response


@pytest.mark.parametrize(("taken", "resumed"), [(CONTEXT, STREAM), (STREAM, CONTEXT)])
def test_resume_in_the_other_mode_is_invalid_argument(vae_decoder, latents, taken, resumed):
    a = new_stream(vae_decoder, taken)
    a.decode(chunk(0, latents[0]))
    name = decoder_pb2.DecodeMode.Name(taken)
    with pytest.raises(RequestError, match=f"taken in decode_mode {name}.*set DecodeConfig.decode_mode to {name}") as e:
        new_stream(vae_decoder, resumed, snap(a).state)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    # a state whose metadata does not say (or lies): its tensors give the mode away
    data = snapshot.pack(SNAPSHOT_KIND, a.state_dict(), {"vae_preset": "tiny", "decode_mode": "STREAM"})
    if taken == CONTEXT:
        with pytest.raises(RequestError, match="taken in decode_mode CONTEXT"):
            new_stream(vae_decoder, STREAM, data)


def test_bad_context_states_are_invalid_argument(vae_decoder, latents):
    a = new_stream(vae_decoder)
    a.decode(chunk(0, latents[0]))
    good = a.state_dict()
    ctx = good["context"]
    fresh = new_stream(vae_decoder).state_dict()  # before any chunk: no context
    cases = {
        "wrong dtype": ({**good, "context": ctx.double()}, "must be one of"),
        "wrong shape": ({**good, "context": ctx[:, :, :, :4]}, r"must have shape \(1, 16, 1..3, 8, 8\)"),
        "too many latents": ({**good, "context": torch.cat([ctx, ctx], dim=2)}, "1..3"),
        "not finite": ({**good, "context": ctx.float() * float("nan")}, "NaN or infinite"),
        "missing": ({k: v for k, v in good.items() if k != "context"}, "has no 'context' latents"),
        "unexpected": ({**fresh, "context": ctx}, "no chunk was yet decoded"),
        "stranger entry": ({**good, "extra": torch.zeros(1)}, "unexpected entries"),
    }
    for what, (tensors, words) in cases.items():
        with pytest.raises(RequestError, match=words) as e:
            new_stream(vae_decoder, state=pack_context_state(tensors))
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT, what
