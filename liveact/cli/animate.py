"""``liveact animate``: reference image + speech -> talking-head MP4, in this process."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from tqdm import tqdm

from liveact.config import get_preset, preset_names

log = logging.getLogger(__name__)

PUSH_SECONDS = 1.0  # audio fed to the session per step, as a live stream would arrive


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "animate",
        help="render a talking-head video from a reference image and a speech file",
        description="Run the whole LiveAct pipeline in one process: the reference image is encoded once, "
        "the speech is fed as a stream, each chunk (21 then 32 video frames) is denoised in 3 steps against the "
        "ConvKV memory and decoded by the streaming VAE, and the frames are written as H.264 MP4 with the "
        "speech muxed in. No GPU or services needed for the default tiny preset. The built-in tiny model knows "
        "only 64x64 flat-shaded cartoon faces (liveact/weights/tiny/MODEL_CARD.md): given a photograph it "
        "animates a blur, and says so; real faces need --preset liveact-18b --model DIR on a GPU.",
        epilog="Example: liveact animate --image examples/face.png --audio examples/speech.wav --out out.mp4",
    )
    p.add_argument(
        "--image", required=True, type=Path, help="reference image (PNG/JPEG/...; cropped to the session size)"
    )
    p.add_argument(
        "--audio", required=True, type=Path, help="speech (any format ffmpeg reads; resampled to 16 kHz mono)"
    )
    p.add_argument("--out", required=True, type=Path, help="output MP4 path")
    p.add_argument("--frames-dir", type=Path, default=None, help="also write every frame as PNG into this directory")
    p.add_argument("--preset", default="tiny", choices=preset_names(), help="model preset (default: tiny)")
    p.add_argument("--model", type=Path, default=None, help="local weights directory (default: the built-in weights)")
    p.add_argument("--size", default=None, help="frame size WxH in pixels, multiples of 16 (default: the preset's)")
    p.add_argument("--fps", type=float, default=20.0, help="output frame rate (default: 20)")
    p.add_argument("--seconds", type=float, default=None, help="use at most this many seconds of the audio")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default: 0); the same seed gives the same video")
    p.add_argument("--prompt", default="", help="optional text prompt (emotion/action) for presets with a text encoder")
    p.add_argument(
        "--decode",
        choices=("stream", "context"),
        default="context",
        help="VAE decoding: 'context' re-decodes the previous 3 latents with each chunk from a fresh cache, as "
        "the public implementation does and the built-in model is trained for; 'stream' keeps the causal cache "
        "across chunks (equal to one full decode) (default: context)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--json", action="store_true", help="print a JSON summary (frames, seconds, fps) at the end")
    p.set_defaults(func=run)


def parse_size(size: str | None, preset: str) -> tuple[int, int]:
    """'WxH' (or 'W*H', as the public --size) -> (width, height); None -> the preset's default."""
    if size is None:
        config = get_preset(preset)
        return config.width, config.height
    return parse_wxh(size)


def parse_wxh(size: str) -> tuple[int, int]:
    """'WxH' or 'W*H' -> (width, height), both positive multiples of 16."""
    parts = size.lower().replace("*", "x").split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--size must look like 128x128 (width x height), got {size!r}") from None
    if width <= 0 or height <= 0 or width % 16 or height % 16:
        raise ValueError(f"--size {size}: width and height must be positive multiples of 16")
    return width, height


def run(args: argparse.Namespace) -> int:
    from liveact.audio import decode_audio
    from liveact.media import Mp4Writer, PngFrameWriter, load_reference_image
    from liveact.pipeline import AnimationSession, load_engine
    from liveact.pipeline.reference import reference_warning

    if not args.fps > 0:
        raise ValueError(f"--fps must be positive, got {args.fps}")
    if args.seconds is not None and not args.seconds > 0:
        raise ValueError(f"--seconds must be positive, got {args.seconds}")
    width, height = parse_size(args.size, args.preset)
    image = load_reference_image(args.image, width, height)  # fail fast on bad input
    t_load = time.perf_counter()
    engine = load_engine(args.preset, args.model, args.device, args.seed)
    pcm = decode_audio(args.audio, engine.audio_config)
    rate = engine.audio_config.sample_rate
    if args.seconds is not None:
        pcm = pcm[: round(args.seconds * rate)]
    if (warning := reference_warning(image, args.preset, engine.trained)) is not None:
        log.warning("%s: %s", args.image, warning)
    session = AnimationSession(engine, image, args.prompt, args.fps, args.seed, args.decode)
    load_s = time.perf_counter() - t_load

    step = int(PUSH_SECONDS * rate)
    expected = session.chunks_needed(max(1, int(len(pcm) * args.fps // rate)))
    t0 = time.perf_counter()
    frames = 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pngs = PngFrameWriter(args.frames_dir) if args.frames_dir is not None else None
    with Mp4Writer(args.out, args.fps, width, height, audio=(pcm, rate)) as writer:
        with tqdm(total=expected, unit="chunk", desc="animate") as bar:

            def emit(chunks) -> None:
                nonlocal frames
                for chunk in chunks:
                    writer.write(chunk.frames)
                    if pngs is not None:
                        pngs.write(chunk.frames)
                    frames += chunk.frames.shape[0]
                    bar.update()
                    bar.set_postfix(fps=f"{frames / (time.perf_counter() - t0):.1f}")

            for i in range(0, len(pcm), step):
                emit(session.push_audio(pcm[i : i + step]))
            emit(session.finish())
    elapsed = time.perf_counter() - t0
    summary = {
        "out": str(args.out),
        "preset": args.preset,
        "trained_weights": engine.trained,
        "frames": frames,
        "fps": args.fps,
        "video_seconds": round(frames / args.fps, 3),
        "load_seconds": round(load_s, 3),
        "generate_seconds": round(elapsed, 3),
        "generated_fps": round(frames / elapsed, 2),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        log.info("wrote %s: %d frames in %.1f s (%.1f fps)", args.out, frames, elapsed, frames / elapsed)
    return 0
