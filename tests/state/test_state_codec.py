"""liveact.state.codec (safetensors packing, parts, digests), StoreSettings and Backoff: no Redis needed."""

from __future__ import annotations

import pickle
import random

import pytest
import torch

from liveact.state import Backoff, codec
from liveact.state.settings import MAX_PART_BYTES, MIN_PART_BYTES, StoreSettings

KIB = 1024
MIB = 1024 * KIB
LARGEST_STRING_HEADER = 10  # sds header and NUL of a value over 64 KiB


def sample_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    f32 = torch.randn(3, 5, generator=g)
    return {
        "f32": f32,
        "bf16": torch.randn(4, 7, generator=g).to(torch.bfloat16),
        "fp8": (torch.randn(2, 3, 8, generator=g) * 4).to(torch.float8_e4m3fn),
        "i64": torch.tensor([-(2**62), -1, 0, 2**62 + 7], dtype=torch.int64),
        "bool": torch.tensor([[True, False], [False, True]]),
        "empty": torch.zeros(0, 16),
        "empty_bf16": torch.zeros(2, 0, dtype=torch.bfloat16),
        "scalar": torch.tensor(3.5),
    }


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return a.reshape(-1).view(torch.uint8).equal(b.reshape(-1).view(torch.uint8))


def test_round_trip_is_bitwise_for_every_dtype():
    tensors = sample_tensors()
    tensors["nan"] = torch.tensor([float("nan"), float("-inf"), -0.0])
    back = codec.unpack(codec.pack(tensors))
    assert sorted(back) == sorted(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype, name
        assert back[name].shape == t.shape, name
        assert bitwise_equal(back[name], t), name
    back["f32"].add_(1)  # decoded tensors are ordinary writable CPU tensors


def test_views_and_strided_tensors_are_stored_as_their_values():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = {"t": base.t(), "row0": base[0], "row1": base[1], "cols": base[:, ::2], "base": base}
    back = codec.unpack(codec.pack(tensors))
    for name, t in tensors.items():
        assert torch.equal(back[name], t), name
        assert back[name].is_contiguous()


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_unsupported_dtype_and_bad_names_are_refused_clearly():
    if hasattr(torch, "complex32"):
        with pytest.raises(codec.CodecError, match="cannot store"):
            codec.pack({"c": torch.zeros(2, dtype=torch.complex32)})
    with pytest.raises(codec.CodecError, match="name"):
        codec.pack({"__metadata__": torch.zeros(1)})
    with pytest.raises(codec.CodecError, match="not a torch"):
        codec.pack({"x": [1, 2]})


def test_pickle_and_garbage_are_not_decoded():
    payload = pickle.dumps({"x": torch.zeros(2)})
    with pytest.raises(codec.CodecError):
        codec.unpack(payload)
    with pytest.raises(codec.CodecError):
        codec.unpack(b"\x00" * 7)
    blob = codec.pack(sample_tensors())
    with pytest.raises(codec.CodecError):
        codec.unpack(blob[: len(blob) // 2])  # truncated


@pytest.mark.parametrize("size", [0, 1, 4 * KIB - 1, 4 * KIB, 4 * KIB + 1, 3 * 4 * KIB, 10 * KIB + 123, 5 * MIB + 77])
@pytest.mark.parametrize("part", [4 * KIB, 2 * MIB])
def test_parts_respect_part_bytes_fill_their_size_classes_and_rejoin(size, part):
    from liveact.state.redis_memory import part_sizes, string_memory

    data = random.Random(size).randbytes(size)
    sizes = part_sizes(size, part)
    views = codec.views_of(data, sizes)
    assert [len(v) for v in views] == sizes and all(n <= part for n in sizes)
    assert b"".join(views) == data and len(views) >= 1
    # every part but the last fills its size class: Redis spends on it no more than its string header (10 bytes)
    assert all(string_memory(n) - n <= LARGEST_STRING_HEADER for n in sizes[:-1])
    with pytest.raises(ValueError, match="add up to"):
        codec.views_of(data, [*sizes, 1])


def test_digest_changes_with_one_flipped_byte():
    blob = bytearray(codec.pack(sample_tensors()))
    before = codec.digest(bytes(blob))
    assert len(before) == 64 and before == codec.digest(memoryview(bytes(blob)))
    blob[len(blob) // 2] ^= 0x01
    assert codec.digest(bytes(blob)) != before


# -- settings ----------------------------------------------------------------------------------


def test_default_settings_are_valid():
    s = StoreSettings()
    assert s.validate() == []
    assert s.part_bytes == 64 * 1024 * KIB and s.keep_versions >= 2


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"part_bytes": MIN_PART_BYTES - 1}, "part_bytes"),
        ({"part_bytes": MAX_PART_BYTES + 1}, "part_bytes"),
        ({"keep_versions": 1}, "keep_versions"),
        ({"url": "http://x"}, "url"),
        ({"key_prefix": "a{b}"}, "key_prefix"),
        ({"key_prefix": "a:b"}, "key_prefix"),
        ({"tls_ca_file": "/nonexistent/ca.pem", "tls": True}, "tls_ca_file"),
        ({"tls_ca_file": __file__}, "tls is off"),
        ({"tls": True, "tls_cert_file": __file__}, "together"),
        ({"session_ttl_s": 0}, "session_ttl_s"),
        ({"lease_ttl_s": 7200}, "lease_ttl_s"),
        ({"username": "u"}, "password"),
    ],
)
def test_settings_problems_name_the_field(change, words):
    problems = StoreSettings(**change).validate()
    assert problems and any(words in p for p in problems), problems
    with pytest.raises(ValueError, match=words.split()[0]):
        StoreSettings(**change).connect()


def test_connect_builds_a_tls_client_with_credentials_and_timeouts():
    s = StoreSettings(
        url="redis://cache:6380/2", password="pw", username="gen", tls=True, tls_ca_file=__file__, op_timeout_s=1.5
    )
    client = s.connect()
    pool = client.connection_pool
    kw = pool.connection_kwargs
    assert "SSL" in pool.connection_class.__name__
    assert (kw["host"], kw["port"], kw["db"]) == ("cache", 6380, 2)
    assert (kw["password"], kw["username"], kw["ssl_ca_certs"]) == ("pw", "gen", __file__)
    assert kw["socket_timeout"] == 1.5 and kw["socket_connect_timeout"] == 1.5
    plain = StoreSettings().connect().connection_pool
    assert "SSL" not in plain.connection_class.__name__


# -- backoff -----------------------------------------------------------------------------------


def test_backoff_grows_with_jitter_and_is_capped():
    b = Backoff(base_s=0.1, factor=2.0, cap_s=1.0, jitter=0.5)
    rng = random.Random(7)
    delays = [b.delay(n, rng) for n in range(12)]
    for n, d in enumerate(delays):
        nominal = min(1.0, 0.1 * 2**n)
        assert nominal * 0.5 <= d <= nominal, (n, d)
    assert max(delays) <= 1.0 and delays[-1] >= 0.5  # reached the cap
    assert len(set(delays)) == len(delays)  # jittered, not lock-step
    assert b.delay(10**6, rng) <= 1.0  # huge attempt counts do not overflow
    gen = b.delays(random.Random(7))
    assert [next(gen) for _ in range(12)] == delays


def test_backoff_without_jitter_is_exact_and_rejects_bad_values():
    b = Backoff(base_s=0.5, factor=3.0, cap_s=10.0, jitter=0.0)
    assert [b.delay(n) for n in range(5)] == [0.5, 1.5, 4.5, 10.0, 10.0]
    for bad in ({"base_s": 0}, {"factor": 0.5}, {"jitter": 1.5}, {"base_s": 5, "cap_s": 1}):
        with pytest.raises(ValueError):
            Backoff(**bad)
