"""``liveact client``: animate through a running generator service and write the MP4."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "client",
        help="stream an image and speech to a generator service and write the returned video as MP4",
        description="Open one Animate stream to TARGET: send the reference image, then the speech as 16 kHz s16le "
        "PCM in 100 ms pieces (at real-time pace with --realtime, else as fast as the server takes them), receive "
        "JPEG frames and write them with the speech as H.264 MP4. Prints time to first frame and fps. When the "
        "generator hands the session off (draining) or the stream breaks after a checkpoint, the client resumes "
        "it (EXACT) through TARGET, up to --max-resumes times: the video has every frame once.",
    )
    p.add_argument("--target", default="127.0.0.1:50051", help="generator address host:port (default: 127.0.0.1:50051)")
    p.add_argument("--image", required=True, type=Path)
    p.add_argument("--audio", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--fps", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default=None, help="WxH (default: the server preset's)")
    p.add_argument("--realtime", action="store_true", help="send audio at real-time pace, as a live source would")
    p.add_argument("--max-resumes", type=int, default=3, help="resume a handed-off or broken session this often")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import grpc
    import numpy as np
    from PIL import Image

    from liveact.audio import AudioConfig, decode_audio
    from liveact.cli.animate import parse_wxh
    from liveact.client import animate_resumable
    from liveact.media import Mp4Writer
    from liveact.v1 import common_pb2

    width, height = parse_wxh(args.size) if args.size else (0, 0)  # 0 x 0: the server preset's size
    rate = AudioConfig().sample_rate
    pcm = decode_audio(args.audio)
    image = args.image.read_bytes()
    try:
        result = asyncio.run(
            animate_resumable(args.target, image, pcm, max_resumes=args.max_resumes, sample_rate=rate, fps=args.fps,
                              seed=args.seed, output_format=common_pb2.JPEG, width=width, height=height,
                              realtime=args.realtime)
        )  # fmt: skip
    except grpc.aio.AioRpcError as exc:
        why = f"{exc.code().name}: {exc.details()}"
        raise ValueError(f"the generator at {args.target} ended the session: {why}") from None
    h = result.header
    for warning in h.warnings:
        log.warning("the generator says: %s", warning)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with Mp4Writer(args.out, h.fps, h.width, h.height, audio=(pcm, rate)) as writer:
        for chunk in result.chunks:
            writer.write(np.stack([np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in chunk.frames]))
    summary = {
        "out": str(args.out),
        "session_id": h.session_id,
        "frames": result.frame_count,
        "time_to_first_frame_s": round(result.first_frame_s or 0.0, 3),
        "seconds": round(result.seconds, 3),
        "fps": round(result.frame_count / result.seconds, 2) if result.seconds else 0.0,
        "checkpoints": len(result.checkpoints),
        "checkpoints_skipped": result.end.checkpoints_skipped if result.end is not None else 0,
        # what an EXACT resume from the newest checkpoint may replay, as the generator reported it
        "resume_replay_s": round(result.checkpoints[-1].replay_seconds, 2) if result.checkpoints else None,
    }
    print(json.dumps(summary, indent=2))
    return 0
