"""The ``Decoder`` servicer: admission control, config checks, one ``DecodeStream`` per ``Decode`` call.

A stream is ``config`` (first), then ``chunk``s in order, then ``end``; each chunk's frames come back
as soon as it is decoded, and ``end`` (or the client half-closing) flushes the rest of an fMP4
stream and finishes the call with OK. The VAE is loaded once (in warm-up) and shared; each stream
owns its decode state, which is freed when the stream ends, fails or is cancelled: with
``DecodeConfig.decode_mode`` STREAM the VAE's causal cache, with CONTEXT (the default) the last 3
clean latents (the public implementation's decode; see ``stream.py``).

Snapshots: a ``snapshot`` request after chunk k is answered, after chunk k's frames, with the
stream's state (``DecodeStream.snapshot``: the decode state and chunk position, safetensors);
``DecodeConfig.resume_state`` starts a stream that continues from it with chunk k + 1, and
``first_output_frame`` lets it skip frames the client already has (see ``stream.py``, also for why a
resumed FMP4_H264 stream starts a new fragmented MP4). After ``end`` the call ends when the client
half-closes; a request after ``end`` (a snapshot included) is FAILED_PRECONDITION.

Status codes: INVALID_ARGUMENT (bad config, latents, audio or chunk order; a resume_state that is
damaged or of another VAE preset, size or decode mode), FAILED_PRECONDITION (a chunk before the config, a second
config, a request after end), RESOURCE_EXHAUSTED (all ``--max-streams`` slots busy; a snapshot state
over ``--max-message-mb``), UNAVAILABLE (still loading the VAE: retry), INTERNAL (the VAE or ffmpeg
failed).

Decoding and encoding run on a thread pool (one job per stream at a time), never on the event loop.
The next request is read only after the previous chunk's responses were handed to gRPC, whose flow
control holds them until the client reads: a slow client slows its own stream, nothing piles up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc
import torch

from liveact import determinism
from liveact.v1 import decoder_pb2, decoder_pb2_grpc
from liveact.vae import StreamingDecoder, get_vae_preset
from liveact.vae.loading import load_vae
from services.common import logs
from services.common.errors import RequestError
from services.common.server import run
from services.common.stream_metrics import StreamMetrics
from services.common.streams import Slots, read_config
from services.common.telemetry import CHUNK_KEY, Telemetry, Tracing
from services.decoder.settings import DecoderSettings
from services.decoder.stream import DecodeStream, parse_config

__all__ = ["SERVICE", "Decoder", "serve"]

log = logging.getLogger(__name__)

SERVICE = decoder_pb2.DESCRIPTOR.services_by_name["Decoder"].full_name
RESPONSE_OVERHEAD = 64 * 1024  # bytes of a response kept for its other fields and framing

T = TypeVar("T")


class Decoder(decoder_pb2_grpc.DecoderServicer):
    def __init__(self, settings: DecoderSettings, tracing: Tracing) -> None:
        self.settings = settings
        self.tracing = tracing
        self.decoder: StreamingDecoder | None = None  # set by warm_up
        self.max_response_bytes = settings.max_message_bytes - RESPONSE_OVERHEAD
        self.executor = concurrent.futures.ThreadPoolExecutor(settings.max_streams, "liveact-decoder")
        self.slots = Slots(  # admitted streams whose resources are not yet released (freed from worker threads too)
            settings.max_streams,
            f"all {settings.max_streams} decode stream slots are busy: retry later or on another replica",
        )
        self._ids = itertools.count(1)
        self.metrics = StreamMetrics("decoder", lambda: self.slots.active, work="decode", output="frames")

    async def warm_up(self) -> None:
        self.decoder = await asyncio.to_thread(self._load)

    def _load(self) -> StreamingDecoder:
        s = self.settings
        determinism.apply(s.device)  # before the first CUDA work: repeatable decodes (EXACT resume)
        cfg = get_vae_preset(s.vae_preset)
        if s.vae_dir is None:
            log.warning(
                "no trained weights for VAE preset %r: using fresh (seeded) weights, frames will not show a face",
                s.vae_preset,
            )
        vae = load_vae(cfg, s.vae_dir).to(s.device).eval()  # type: ignore[attr-defined]  # diffusers: untyped Module
        decoder = StreamingDecoder(vae, cfg)
        decoder.decode(torch.zeros(1, cfg.z_dim, 1, 2, 2, device=vae.device))  # first call: kernels, allocator
        log.info("VAE ready", extra={"vae_preset": cfg.name, "weights": str(s.vae_dir or "fresh"), "device": s.device})
        return decoder

    def close(self) -> None:
        """After the server stopped: wait for the jobs still running (they end with their streams)."""
        self.executor.shutdown(wait=True, cancel_futures=True)

    async def Decode(self, request_iterator, context) -> AsyncIterator[decoder_pb2.DecodeResponse]:
        if self.decoder is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the decoder is still loading its VAE: retry shortly")
        try:
            self.slots.take()
        except RequestError as exc:
            await context.abort(exc.code, exc.message)
        sid = next(self._ids)
        started = time.monotonic()
        ended = False  # end was sent (not just a half-close): later requests are refused
        stream: DecodeStream | None = None
        jobs: list[concurrent.futures.Future] = []  # the stream's job in flight, if any
        try:
            config = (await read_config(request_iterator, "DecodeConfig")).config
            stream = self._new_stream(config)
            if config.resume_state:
                await self._offload(jobs, stream.resume, config.resume_state)
            await self._offload(jobs, stream.open)
            log.info("stream started", extra={"stream": sid, "peer": context.peer(), **_describe(stream)})
            async for request in request_iterator:
                kind = request.WhichOneof("kind")
                if kind == "chunk":
                    chunk = request.chunk
                    span = self.tracing.start_from(
                        "decoder.decode", chunk.trace_context, **{CHUNK_KEY: chunk.chunk_index}
                    )
                    t0 = time.monotonic()
                    responses = await self._offload(jobs, stream.decode, chunk)
                    self.metrics.duration.record(time.monotonic() - t0)
                    self.metrics.output.add(sum(r.frames.frame_count for r in responses))
                    span.end()
                    for response in responses:
                        yield response
                elif kind == "snapshot":
                    response = await self._offload(jobs, stream.snapshot, request.snapshot)
                    log.info("snapshot taken", extra={"stream": sid, "bytes": len(response.snapshot.state)})
                    yield response
                elif kind == "end":
                    ended = True
                    break
                elif kind == "config":
                    raise RequestError(
                        grpc.StatusCode.FAILED_PRECONDITION, "config was already sent: a stream has one config"
                    )
                else:
                    raise RequestError(
                        grpc.StatusCode.INVALID_ARGUMENT, "empty request: set config, chunk or end (or snapshot)"
                    )
            for response in await self._offload(jobs, stream.finish):  # end, or the client half-closed: the same
                yield response
            seconds = round(time.monotonic() - started, 3)
            log.info("stream ended", extra={"stream": sid, "frames": stream.frames_sent, "seconds": seconds})
            if ended:
                async for late in request_iterator:  # the call ends when the client half-closes
                    raise _after_end(late.WhichOneof("kind"))
        except RequestError as exc:
            log.info("stream refused", extra={"stream": sid, "code": exc.code.name, "why": exc.message})
            await context.abort(exc.code, exc.message)
        except Exception as exc:  # the VAE or ffmpeg failed: not the client's doing
            log.exception("stream failed", extra={"stream": sid})
            await context.abort(grpc.StatusCode.INTERNAL, f"decoding failed: {exc}")
        finally:
            self._release(stream, jobs[-1] if jobs else None, sid)

    # -- helpers -------------------------------------------------------------------------------------

    def _new_stream(self, config: decoder_pb2.DecodeConfig) -> DecodeStream:
        assert self.decoder is not None
        limit = self.settings.max_latent_elements
        fmt = parse_config(config, self.decoder.cfg, limit, self.max_response_bytes)
        return DecodeStream(self.decoder, fmt, limit, self.max_response_bytes)

    async def _offload(self, jobs: list, fn: Callable[..., T], *args) -> T:
        """Run ``fn`` on the pool; the job is remembered so that its stream is released only once it ends."""
        job = self.executor.submit(fn, *args)
        jobs[:] = [job]
        return await asyncio.wrap_future(job)

    def _release(self, stream: DecodeStream | None, job: concurrent.futures.Future | None, sid: int) -> None:
        """Free the stream's cache and ffmpeg and its slot, once its last job (if still running) has ended."""

        def release(_job=None) -> None:
            try:
                if stream is not None:
                    stream.close()
            except Exception:
                log.exception("closing stream failed", extra={"stream": sid})
            finally:
                self.slots.release()

        if job is not None and not job.done():  # cancelled mid-chunk: the job still holds the stream
            job.add_done_callback(release)
        else:
            release()


def _describe(stream: DecodeStream) -> dict[str, object]:
    f = stream.fmt
    return {
        "size": f"{f.width}x{f.height}",
        "fps": str(f.fps),
        "format": f.format_name,
        "decode_mode": f.mode_name,
        "next_chunk": stream.next_index,
        "first_output_frame": f.first_output_frame,
    }


def _after_end(kind: str | None) -> RequestError:
    if kind == "snapshot":
        reason = "snapshot after end: the stream has ended, nothing is left to resume; take snapshots before end"
    else:
        reason = f"{kind or 'an empty request'} after end: the stream has ended; half-close the requests after end"
    return RequestError(grpc.StatusCode.FAILED_PRECONDITION, reason)


def serve(argv: list[str] | None = None) -> None:
    settings = DecoderSettings.parse(argv, description="LiveAct decoder: latent chunks -> video frames (gRPC).")
    logs.configure(settings.log_level)
    telemetry = Telemetry(settings, "decoder")
    servicer = Decoder(settings, telemetry.tracing)

    def add(server: grpc.aio.Server) -> None:
        decoder_pb2_grpc.add_DecoderServicer_to_server(servicer, server)

    try:
        asyncio.run(run(settings, [SERVICE], add, servicer.warm_up))
    finally:
        servicer.close()
        telemetry.shutdown()
