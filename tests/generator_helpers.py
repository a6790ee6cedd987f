"""Shared by the generator service tests: request builders, raw ``Animate`` streams, probes.

Raw streams whose status matters use grpc's synchronous client: its asyncio client can report
INTERNAL "Internal error from Core" instead of the server's status when the server ends a stream
while the client is still writing to it (grpc/grpc#36066), which a refusal invites.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc
import numpy as np

from liveact.v1 import generator_pb2, generator_pb2_grpc

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FACE = (EXAMPLES / "face.png").read_bytes()
RATE = 16000
END = generator_pb2.AnimateRequest(end_of_audio=generator_pb2.EndOfAudio())
TONE = (np.sin(np.arange(RATE) * 0.05) * 8000).astype("<i2").tobytes()  # 1 s of s16le mono


def speech_clip(seconds: int) -> np.ndarray:
    """``seconds`` of examples/speech.wav (tiled), float PCM at RATE rounded to s16 as the client sends it."""
    from liveact.audio import decode_audio
    from liveact.client.animate import to_s16

    pcm = decode_audio(EXAMPLES / "speech.wav")
    pcm = np.tile(pcm, -(-RATE * seconds // len(pcm)))[: RATE * seconds]
    return to_s16(pcm).astype(np.float32) / 32768.0


def raw_animate(target: str, image: bytes, speech: np.ndarray, **kw):
    """``liveact.client.animate`` with RAW_RGB frames and seed 3 (a coroutine)."""
    from liveact.client import animate
    from liveact.v1 import common_pb2

    return animate(target, image, speech, RATE, output_format=common_pb2.RAW_RGB, seed=3, **kw)


def frames_of(chunks, height=64, width=64) -> list[tuple[int, np.ndarray]]:
    """[(absolute frame index, (H, W, 3) uint8)] from RAW_RGB FrameChunks."""
    out = []
    for c in chunks:
        for i, f in enumerate(c.frames):
            out.append((c.first_frame + i, np.frombuffer(f, dtype=np.uint8).reshape(height, width, 3)))
    return out


def config(**kw) -> generator_pb2.AnimateRequest:
    kw.setdefault("reference_image", FACE)
    return generator_pb2.AnimateRequest(config=generator_pb2.SessionConfig(**kw))


def audio(seq: int, data: bytes) -> generator_pb2.AnimateRequest:
    return generator_pb2.AnimateRequest(audio=generator_pb2.AudioChunk(seq=seq, data=data))


def tone(seconds: float) -> np.ndarray:
    """Float PCM in [-1, 1] at RATE (what ``liveact.client.animate`` takes)."""
    return (np.sin(np.arange(round(RATE * seconds)) * 0.05) * 0.25).astype(np.float32)


def session_sync(
    gen: str,
    messages: Iterable[generator_pb2.AnimateRequest],
    options: list | None = None,
    admitted: threading.Event | None = None,
) -> tuple[int, generator_pb2.SessionEnd | None]:
    """One ``Animate`` with the synchronous client: (frames received, SessionEnd); raises ``grpc.RpcError``.

    ``admitted`` is set when the SessionHeader arrives (and when the call ends, whatever the end).
    """
    frames, end = 0, None
    try:
        with grpc.insecure_channel(gen, options=options) as ch:
            for msg in generator_pb2_grpc.GeneratorStub(ch).Animate(iter(messages)):
                kind = msg.WhichOneof("kind")
                if kind == "header" and admitted is not None:
                    admitted.set()
                elif kind == "frames":
                    frames += msg.frames.frame_count
                elif kind == "end":
                    end = msg.end
    finally:
        if admitted is not None:
            admitted.set()  # a request iterator waiting for it must not wait forever
    return frames, end


def after_header(admitted: threading.Event, messages: Iterable[generator_pb2.AnimateRequest]) -> Iterator:
    """The config, then the rest of ``messages`` once ``admitted`` is set (a careful client's order)."""
    it = iter(messages)
    yield next(it)
    admitted.wait()
    yield from it


async def stream(
    gen: str, messages: Iterable[generator_pb2.AnimateRequest], options: list | None = None
) -> tuple[grpc.StatusCode, str]:
    """Send ``messages`` (then half-close), read everything; the stream's status code and details."""
    try:
        await asyncio.to_thread(session_sync, gen, list(messages), options)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


async def server_info(gen: str) -> generator_pb2.ServerInfo:
    async with grpc.aio.insecure_channel(gen) as ch:
        return await generator_pb2_grpc.GeneratorStub(ch).GetServerInfo(generator_pb2.GetServerInfoRequest())


async def wait_idle(gen: str, timeout_s: float = 10.0) -> generator_pb2.ServerInfo:
    """Poll ``GetServerInfo`` until no session is active; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (info := await server_info(gen)).active_sessions:
        assert time.monotonic() < deadline, f"{info.active_sessions} session(s) still active after {timeout_s} s"
        await asyncio.sleep(0.05)
    return info


def rss_mb(pid: int) -> float:
    """Resident set size of a process (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, in clock ticks


KILL_AFTER_VERSIONS = 3  # a killed session has committed 3 versions: the first one is garbage-collected by then


def assert_versions_share_parts(redis_url: str, session_id: str, prefix: str = "liveact") -> None:
    """The newest two versions share every sink-slot part (written once) and differ in the rest of the caches;
    Redis holds every part they reference, and besides them at most one version's changed parts (a write the
    kill interrupted before its commit: orphans, which expire), so the first version's own parts were collected."""
    import json

    import redis

    r = redis.Redis.from_url(redis_url)
    manifests = [json.loads(m) for m in r.lrange(f"{{{prefix}:{session_id}}}:history", 0, -1)]
    assert len(manifests) == 2 and manifests[0]["version"] >= KILL_AFTER_VERSIONS, [m["version"] for m in manifests]

    def parts(manifest: dict, sink: bool) -> set[str]:  # of the streams holding sink (or other) cache slots
        return {p["sha256"] for rank in manifest["shards"] for st in rank for p in st["parts"]
                if any(t["name"].startswith("dit.memory.") and (".sink." in t["name"]) == sink
                       for t in st["tensors"])}  # fmt: skip

    newest, previous = manifests
    assert parts(newest, sink=True) == parts(previous, sink=True) != set()
    assert not parts(newest, sink=False) & parts(previous, sink=False)
    referenced = {p["sha256"] for m in manifests for rank in m["shards"] for t in rank for p in t["parts"]}
    stored = {k.decode().rsplit(":", 1)[1] for k in r.scan_iter(match=f"{prefix}:part:{session_id}:*", count=1000)}
    changed = {p["sha256"] for rank in newest["shards"] for t in rank for p in t["parts"]} - {
        p["sha256"] for rank in previous["shards"] for t in rank for p in t["parts"]
    }
    orphans = stored - referenced
    assert referenced <= stored and len(orphans) <= len(changed), (len(orphans), len(changed))
    assert all(r.pttl(f"{prefix}:part:{session_id}:{d}") > 0 for d in orphans)


def prometheus(text: str):
    """(samples {(name, labels)}: value, value(name, **labels) -> the one matching sample's value)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def value(name: str, **labels) -> float:
        matches = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
        assert len(matches) == 1, (name, labels, sorted(n for n, _ in samples if n.startswith("liveact")))
        return matches[0]

    return samples, value


def scrape(port: int) -> str:
    """The text a service's /metrics serves."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()
