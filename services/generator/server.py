"""The ``Generator`` servicer: admission control, config checks, one ``GeneratorSession`` per stream.

Status codes: INVALID_ARGUMENT (bad config, audio or resume fields, request bytes that do not decode;
``validate.py`` checks every client field), FAILED_PRECONDITION (audio before config,
or the request stream ended without EndOfAudio), RESOURCE_EXHAUSTED (all ``--max-sessions`` slots
busy; gRPC itself for a message over ``--max-message-mb``), UNAVAILABLE (warming up, draining, or a
peer service down: retry), ABORTED (another generator took the session over), and for a resume
the codes in ``services.generator.resume`` (NOT_FOUND, PERMISSION_DENIED, OUT_OF_RANGE, DATA_LOSS).

Durable sessions (``--redis-url``): each new session is recorded in Redis with the hash of its
resume secret and a lease; ``CheckpointWriter`` checkpoints it every ``--checkpoint-every-chunks``;
a ``ResumeRequest`` continues a session on any replica (``services.generator.resume``). Without a
Redis URL sessions work as before and a resume is FAILED_PRECONDITION. If Redis is unreachable when
a session starts, the session runs without checkpoints (logged) rather than failing.

Tensor parallelism (``--tp N``): rank 0 (this process) serves gRPC and drives N-1 worker ranks
(``liveact.parallel.ranks``); every session's DiT steps on all ranks together and its checkpoints
hold one shard per rank. A rank that exits or hangs turns every health name NOT_SERVING within
``--tp-check-s``, ends the sessions with UNAVAILABLE (clients resume them on another replica) and
exits the process with status ``EXIT_RANK_FAILED``.

SIGTERM (``services.common.server.run``): health turns NOT_SERVING and new sessions are refused
with UNAVAILABLE at once; durable sessions are checkpointed and handed off (``Generator.drain``);
other running sessions go on until they end, but those still running shortly before the
``--grace-s`` deadline (``DRAIN_MARGIN_S``, or a quarter of the grace if that is less)
are ended with UNAVAILABLE by the generator itself, so that their in-flight DiT work is over and
the process exits within the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from liveact import determinism
from liveact.config import LiveActConfig
from liveact.parallel.ranks import DitRanks, LocalRanks, RankFailure, SessionDiT, TensorParallelRanks
from liveact.pipeline import Engine, load_engine, prepare_sampler
from liveact.pipeline.reference import reference_warning
from liveact.sampling.chunking import video_frames_per_chunk
from liveact.state.store import SessionStore, StoreError, StoreFull
from liveact.v1 import audio_encoder_pb2_grpc, decoder_pb2_grpc, generator_pb2, generator_pb2_grpc
from services.common import logs
from services.common.errors import RequestError
from services.common.server import NOT_SERVING, SERVING, Health, run, server_options
from services.common.streams import Slots, read_config
from services.common.telemetry import Telemetry, Tracing
from services.generator.audio_log import AudioLog
from services.generator.checkpoint import CheckpointWriter
from services.generator.errors import lost_rank
from services.generator.lease import LeaseKeeper
from services.generator.links import Peers
from services.generator.memory_check import check_memory
from services.generator.metrics import GeneratorMetrics
from services.generator.resume import Restored, resume
from services.generator.session import GeneratorSession
from services.generator.settings import GeneratorSettings
from services.generator.tracing import ChunkTraces
from services.generator.validate import SessionParams, check_resume, parse_config, session_info

log = logging.getLogger(__name__)

DRAIN_MARGIN_S = 1.0  # running sessions are ended this long before the --grace-s deadline
RANK_FAILURE_FLUSH_S = 1.0  # a lost rank: time for the sessions' UNAVAILABLE to reach their clients
EXIT_RANK_FAILED = 3  # process status after a lost tensor-parallel rank (the pod restarts it)

SERVICE = generator_pb2.DESCRIPTOR.services_by_name["Generator"].full_name
CHECKPOINTS_HEALTH = SERVICE + ".checkpoints"  # health name: SERVING while the session store answers


@dataclass(frozen=True)
class Warm:
    """What a warm generator serves with (set once, at the end of warm-up)."""

    engine: Engine
    ranks: DitRanks  # the DiT here, or on every tensor-parallel rank
    peers: Peers


class Generator(generator_pb2_grpc.GeneratorServicer):
    def __init__(self, settings: GeneratorSettings, tracing: Tracing) -> None:
        self.settings = settings
        self.tracing = tracing
        self.warm: Warm | None = None
        self.slots = Slots(
            settings.max_sessions,
            f"all {settings.max_sessions} session slots are busy: retry later or on another replica",
        )  # admitted Animate streams, until their handler has finished
        self.sessions: set[GeneratorSession] = set()  # the running ones
        self.draining = False
        self._cut: asyncio.TimerHandle | None = None
        self.store: SessionStore | None = None
        self.ranks: DitRanks | None = None  # set early in warm-up: a failed start still stops the worker ranks
        self.size_limit: tuple[int, int] | None = None  # the largest (width, height) admitted, set in warm-up
        self.metrics = GeneratorMetrics(lambda: list(self.sessions))  # list(): read from the scrape thread

    async def warm_up(self) -> None:
        s = self.settings
        ranks: DitRanks
        determinism.apply(s.device)  # before the first CUDA work: an EXACT resume repeats the frames
        planned = await asyncio.to_thread(check_memory, s)  # before any weight is loaded: StartRefused if it cannot fit
        # sessions larger than memory was planned for are refused (no limit when nothing was planned)
        self.size_limit = s.max_dimensions() if s.max_size or planned is not None else None
        if s.tp > 1:
            tp = TensorParallelRanks(s.rank_spec())
            self.ranks = ranks = tp
            try:
                shard = await asyncio.to_thread(tp.start)  # every rank loads its own heads' weights only
            except BaseException:
                tp.kill()
                raise
            engine = await asyncio.to_thread(
                load_engine, s.preset, s.model_dir or None, tp.device, s.seed, s.dtype, s.kv_cache, model=shard
            )
        else:
            engine = await asyncio.to_thread(
                load_engine, s.preset, s.model_dir or None, s.device, s.seed, s.dtype, s.kv_cache
            )
            self.ranks = ranks = LocalRanks(engine.model, engine.device)
        options = server_options(s)
        self._channels = [grpc.aio.insecure_channel(addr, options=options) for addr in (s.audio_encoder, s.decoder)]
        peers = Peers(
            encoder=audio_encoder_pb2_grpc.AudioEncoderStub(self._channels[0]),  # type: ignore[no-untyped-call]
            decoder=decoder_pb2_grpc.DecoderStub(self._channels[1]),  # type: ignore[no-untyped-call]
        )
        if s.redis_url:
            self.store = SessionStore(s.store_settings())
            if isinstance(ranks, TensorParallelRanks):  # each rank writes its own checkpoint parts
                await ranks.attach_store(s.store_settings())
        self.warm = Warm(engine, ranks, peers)

    async def drain(self) -> None:
        """SIGTERM: refuse new sessions; hand durable ones off; end the rest just before the grace deadline.

        A session with checkpoints finishes the chunk in progress, is checkpointed, and ends with a
        SessionEnd whose ``resume`` the client sends to another replica; its frames so far are all sent.
        """
        self.draining = True
        grace = self.settings.grace_s
        cut_after = max(0.0, grace - min(DRAIN_MARGIN_S, grace / 4))
        log.info("draining sessions", extra={"active": self.slots.active, "cut_after_s": round(cut_after, 3)})
        for session in list(self.sessions):
            if session.checkpoints is not None:
                session.hand_off()
        self._cut = asyncio.get_running_loop().call_later(cut_after, self._end_sessions)

    async def monitor(self, health: Health) -> None:
        await asyncio.gather(self._watch_store(health), self._watch_ranks(health))

    async def close(self) -> None:
        """After the server stopped: the worker ranks exit."""
        if isinstance(self.ranks, TensorParallelRanks):
            await self.ranks.stop()

    async def _watch_ranks(self, health: Health) -> None:
        """A lost tensor-parallel rank: NOT_SERVING at once, sessions ended with UNAVAILABLE, process exit.

        The DiT thread may be stuck in a collective with the dead rank, so the process leaves with
        ``os._exit``; clients resume their sessions on another replica from the last checkpoint.
        """
        ranks = self.ranks
        if not isinstance(ranks, TensorParallelRanks):
            return
        while (why := ranks.problem()) is None:
            ranks.ping_if_idle()
            await asyncio.sleep(self.settings.tp_check_s)
        log.error("tensor-parallel rank lost: stopping this generator", extra={"why": why, "tp": ranks.size})
        self.draining = True
        await health.set(NOT_SERVING)
        for session in list(self.sessions):
            session.abort(lost_rank(why))
        await asyncio.sleep(RANK_FAILURE_FLUSH_S)
        ranks.kill()
        logging.shutdown()
        os._exit(EXIT_RANK_FAILED)

    async def _watch_store(self, health: Health) -> None:
        """Report the session store under ``CHECKPOINTS_HEALTH``: NOT_SERVING there means degraded
        (sessions run, checkpoints wait for Redis), while the Generator itself stays SERVING."""
        if self.store is None:
            return
        up: bool | None = None
        while True:
            try:
                await self.store.ping()
                now = True
            except StoreError as exc:
                now, why, full = False, str(exc), isinstance(exc, StoreFull)
            if now != up:
                await health.set_one(CHECKPOINTS_HEALTH, SERVING if now else NOT_SERVING)
                if now:
                    log.info("session store reachable", extra={"health": CHECKPOINTS_HEALTH})
                else:
                    what = "session store full" if full else "session store unreachable"
                    log.warning(f"{what}: degraded", extra={"error": why})
                up = now
            await asyncio.sleep(self.settings.store_check_s)

    def _end_sessions(self) -> None:
        for session in list(self.sessions):
            log.info("session cut: draining", extra={"session": session.session_id, "frames": session.frames_sent})
            session.abort(
                RequestError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"this server is shutting down (its {self.settings.grace_s:g} s grace period ended) after "
                    f"{session.frames_sent} frames: start a new session on another replica",
                )
            )

    async def _make_durable(self, warm: Warm, params: SessionParams) -> CheckpointWriter | None:
        """Record a new session in Redis and take its lease; None (and a warning) if Redis is away."""
        store = self.store
        if store is None:
            return None
        info = session_info(params, warm.engine.config.name)
        try:
            await store.create_session(params.session_id, params.resume_secret, info)
            lease = await store.acquire(params.session_id, self.settings.owner)
        except StoreError as exc:
            log.warning(
                "session runs without checkpoints: the session store failed",
                extra={"session": params.session_id, "error": str(exc)},
            )
            return None
        return self._writer(LeaseKeeper(store, lease, params.resume_secret, info), warm.engine.config, params.fps)

    def _writer(
        self, keeper: LeaseKeeper, config: LiveActConfig, fps: float, restored: Restored | None = None
    ) -> CheckpointWriter:
        s = self.settings
        chunk_s = video_frames_per_chunk(config, 1) / fps  # a steady chunk's seconds: the replay bound's unit
        log_from = restored.audio_position.seq if restored is not None else 0
        audio_log = AudioLog(keeper, s.backoff(), log_from, s.audio_log_max_mb * 1024 * 1024)
        last_chunk = restored.chunk_index if restored is not None else 0
        return CheckpointWriter(
            keeper, audio_log, s.checkpoint_policy(), s.backoff(), last_chunk, self.metrics.checkpoint_committed,
            chunk_s, self.metrics.checkpoint_skipped, self.metrics.checkpoint_failed,
        )  # fmt: skip

    async def _resume(
        self, warm: Warm, request: generator_pb2.ResumeRequest
    ) -> tuple[SessionParams, Restored, CheckpointWriter]:
        store = self.store
        if store is None:
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "this generator keeps no session state (started without --redis-url): it cannot resume sessions",
            )
        check_resume(request)
        params, restored, lease = await resume(store, warm.engine, warm.ranks, request, self.settings.owner)
        self.metrics.resumes.add(1, {"mode": generator_pb2.ResumeRequest.Mode.Name(request.mode)})
        keeper = LeaseKeeper(store, lease, params.resume_secret, session_info(params, warm.engine.config.name))
        return params, restored, self._writer(keeper, warm.engine.config, params.fps, restored)

    async def GetServerInfo(
        self, request: generator_pb2.GetServerInfoRequest, context: grpc.aio.ServicerContext
    ) -> generator_pb2.ServerInfo:
        if self.warm is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up: retry shortly")
        assert self.warm is not None  # abort raised otherwise
        engine = self.warm.engine
        cfg = engine.config
        return generator_pb2.ServerInfo(
            preset=cfg.name, default_width=cfg.width, default_height=cfg.height,
            default_fps=engine.audio_config.default_fps, max_sessions=self.settings.max_sessions,
            active_sessions=self.slots.active, max_message_bytes=self.settings.max_message_bytes,
            audio_sample_rate=engine.audio_config.sample_rate,
        )  # fmt: skip

    async def Animate(
        self, request_iterator: AsyncIterator[generator_pb2.AnimateRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generator_pb2.AnimateResponse]:
        warm = self.warm
        if warm is None or self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not serving (warming up or draining): retry elsewhere")
        assert warm is not None  # abort raised otherwise
        engine = warm.engine
        try:
            self.slots.take()
        except RequestError as exc:
            await context.abort(exc.code, exc.message)
        session_id = "-"
        session: GeneratorSession | None = None
        dit: SessionDiT | None = None
        checkpoints: CheckpointWriter | None
        restored: Restored | None
        try:
            first = await read_config(request_iterator, "SessionConfig")
            if first.config.HasField("resume") and first.config.resume.session_id:
                params, restored, checkpoints = await self._resume(warm, first.config.resume)
            else:
                limit = self.settings.max_image_mb * 1024 * 1024
                mode = self.settings.session_decode_mode
                params = await asyncio.to_thread(
                    parse_config, first.config, engine.config, engine.audio_config, limit, mode, self.size_limit
                )
                restored, checkpoints = None, await self._make_durable(warm, params)
            session_id = params.session_id
            if restored is None:
                p = params
                assert p.image is not None  # a new session's params carry its reference image
                sampler = await asyncio.to_thread(prepare_sampler, engine, p.image, p.prompt, p.seed)
                dit = await warm.ranks.open(sampler, session_id, durable=checkpoints is not None)  # on every rank
            else:
                dit = restored.dit
            # a client that sent ``traceparent`` metadata gets every chunk trace linked to its span
            client = self.tracing.remote({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
            traces = ChunkTraces(self.tracing, session_id, client)
            session = GeneratorSession(
                engine, params, dit, warm.peers, self.settings.audio_queue, self.settings.chunk_queue,
                traces, self.metrics, checkpoints, restored,
            )  # fmt: skip
            if self.draining:  # SIGTERM arrived while the session was being prepared
                raise RequestError(grpc.StatusCode.UNAVAILABLE, "this server is draining: retry on another replica")
            self.sessions.add(session)
            log.info("session started", extra={"session": session_id, "size": f"{params.width}x{params.height}"})
            warnings = reference_warnings(params, engine)
            for warning in warnings:
                log.warning("session reference", extra={"session": session_id, "warning": warning})
            yield generator_pb2.AnimateResponse(
                header=generator_pb2.SessionHeader(
                    session_id=params.session_id, resume_secret=params.resume_secret, width=params.width,
                    height=params.height, fps=params.fps, output_format=params.output_format,
                    first_frame=restored.first_output_frame if restored else 0,
                    next_audio_seq=restored.next_audio_seq if restored else 0,
                    skipped_frames=restored.skipped_frames if restored else 0, warnings=warnings,
                )
            )  # fmt: skip
            async for message in session.run(request_iterator):
                yield message
            log.info("session ended", extra={"session": session_id, "frames": session.frames_sent})
        except RequestError as exc:
            log.info(
                "session ended with an error", extra={"session": session_id, "code": exc.code.name, "why": exc.message}
            )
            await context.abort(exc.code, exc.message)
        except RankFailure as exc:  # opening or restoring the session on the ranks
            log.warning("session refused: a tensor-parallel rank failed", extra={"session": session_id})
            error = lost_rank(exc)
            await context.abort(error.code, error.message)
        except asyncio.CancelledError:
            log.info("session cancelled", extra={"session": session_id})
            raise
        finally:
            self.slots.release()
            if dit is not None:
                dit.close()
            if session is not None:
                self.sessions.discard(session)


def reference_warnings(params: SessionParams, engine: Engine) -> list[str]:
    """What the session header tells the client about its reference picture (``liveact.pipeline.reference``);
    a resumed session's picture is not sent again, so it has none."""
    if params.image is None:
        return []
    warning = reference_warning(params.image, engine.config.name, engine.trained)
    return [] if warning is None else [warning]


def serve(argv: list[str] | None = None) -> None:
    settings = GeneratorSettings.parse(argv, description="LiveAct generator: the client-facing Animate service.")
    logs.configure(settings.log_level)
    telemetry = Telemetry(settings, "generator")
    servicer = Generator(settings, telemetry.tracing)

    def add(server: grpc.aio.Server) -> None:
        generator_pb2_grpc.add_GeneratorServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]

    async def main() -> None:
        try:
            await run(settings, [SERVICE], add, servicer.warm_up, servicer.drain, servicer.monitor)
        finally:
            await servicer.close()
            telemetry.shutdown()

    asyncio.run(main())
