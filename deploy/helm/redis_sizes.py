"""The Redis bytes per session the chart checks a bundled Redis against (``liveact.redisSessionBytes``).

For each preset, KV cache setting (``generator.kvCache``: ``model`` covers ``auto`` too, since no preset
stores its cache in FP8 by default) and size, the most Redis holds for one session's checkpoints:
``liveact plan``'s ``redis_peak_bytes`` (the shared sink slots and conditioning once, two versions' changed
tensors and the one being written), the largest over the tensor-parallel degrees the preset allows (each
rank's parts round up to Redis' size classes differently). Run ``python deploy/helm/redis_sizes.py`` and
paste its output into ``templates/_helpers.tpl`` after changing a preset, the checkpoint layout or a size;
tests/deploy/test_chart_plan.py checks the committed table against it.
"""

from __future__ import annotations

from liveact.config import get_preset
from liveact.plan.dryrun import PlanCase, dry_run
from liveact.plan.redis_plan import rank_share, redis_plan
from liveact.vae.config import get_vae_preset
from liveact.vae.session import context_state_nbytes

TPS = (1, 2, 4, 8)
SIZES = {"tiny": ((64, 64),), "liveact-18b": ((416, 720), (512, 512), (720, 1280))}
DTYPES = {"tiny": "fp32", "liveact-18b": "bf16"}  # tiny serves on the CPU (fp32), liveact-18b on GPUs (bf16)
KV_SETTINGS = ("model", "fp8")


def session_bytes(preset: str, width: int, height: int, kv: str) -> int:
    """The most Redis memory one session's checkpoints take, over the tensor-parallel degrees."""
    case = PlanCase.serving(preset, 1, width, height, kv, DTYPES[preset])
    run = dry_run(case)
    config = case.config()
    decoder_state = context_state_nbytes(get_vae_preset(config.vae), width, height)
    heads = config.model.num_heads
    peaks = []
    for tp in (t for t in TPS if heads % t == 0):
        rank = rank_share(dict(run.checkpoint_tensors), tp)  # its heads' share
        peaks.append(redis_plan(config, rank, tp, decoder_state_bytes=decoder_state).peak_bytes)
    return max(peaks)


def table() -> dict[str, dict[str, int]]:
    return {
        preset: {f"{kv}/{w}x{h}": session_bytes(preset, w, h, kv) for kv in KV_SETTINGS for w, h in sizes}
        for preset, sizes in SIZES.items()
    }


def main() -> None:
    for preset, rows in table().items():
        size = get_preset(preset)
        print(f"{preset}:  # default size {size.width}x{size.height}")
        print("  redisSessionBytes:")
        for key, value in rows.items():
            print(f"    {key}: {value}")


if __name__ == "__main__":
    main()
