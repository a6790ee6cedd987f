"""``liveact plan``'s Redis figures against a real redis-server: a session's checkpoint versions written by the
real store, each key's MEMORY USAGE summed, equal the plan's first / later / steady bytes."""

from __future__ import annotations

import asyncio

import pytest
import redis as redis_client
import torch
from helpers import checkpoint_meta, session_info

from liveact.plan.redis_plan import redis_plan
from liveact.sampling.audio_window import ROWS_KEPT
from liveact.sampling.capture import StateCapture
from liveact.sampling.noise import SeededNoise
from liveact.sampling.state import export_sampler
from liveact.sampling.stream import StreamingSampler
from liveact.state.schema import AUDIO_ROWS, with_dit_prefix
from liveact.state.settings import StoreSettings
from liveact.state.store import SessionStore
from liveact.testing import fresh_model, micro_config, synthetic_session

pytestmark = pytest.mark.integration  # a redis-server of its own
SID = "plan-check"
PART_BYTES = 64 * 1024  # small parts, so the size classes of many parts are exercised


def test_the_plans_redis_bytes_are_what_redis_holds(redis):
    config = micro_config()
    model = fresh_model(config)
    cond, feats = synthetic_session(model, chunks=6)
    sampler = StreamingSampler(model, cond, SeededNoise(3))
    rows = torch.randn(ROWS_KEPT, config.model.audio_layers, config.model.audio_channels)
    capture = StateCapture()  # as the generator takes a checkpoint: the capture's buffers, one stream per group
    sampler.next_chunk(feats)
    plan = redis_plan(config, {n: t.nbytes for n, t in export_sampler(sampler).items()}, tp=1,
                      cut_bytes=StoreSettings(part_bytes=PART_BYTES).cut_bytes)  # fmt: skip
    r = redis_client.Redis.from_url(redis.url)

    def held() -> int:
        return sum(r.memory_usage(k, samples=0) for k in r.scan_iter(match=f"liveact:part:{SID}:*", count=1000))

    async def main() -> list[int]:
        store = SessionStore(StoreSettings(url=redis.url, part_bytes=PART_BYTES))
        try:
            await store.create_session(SID, "secret", session_info())
            lease = await store.acquire(SID, "gen-a")
            out = []
            for n in range(4):
                sampler.next_chunk(feats)
                shard = with_dit_prefix(capture.capture(sampler).tensors)
                await store.write_checkpoint(lease, checkpoint_meta(n), [{**shard, AUDIO_ROWS: rows + n}])
                out.append(held())
            return out
        finally:
            await store.close()

    after = asyncio.run(main())
    key_chars = len(f"liveact:part:{SID}:") + 64
    exact = redis_plan(config, {n: t.nbytes for n, t in export_sampler(sampler).items()}, tp=1,
                       cut_bytes=StoreSettings(part_bytes=PART_BYTES).cut_bytes, key_chars=key_chars)  # fmt: skip
    assert after[0] == exact.first_bytes
    assert after[1] == exact.first_bytes + exact.later_bytes
    assert after[2] == after[3] == exact.session_bytes  # two versions kept: the oldest's own parts collected
    assert plan.session_bytes > exact.session_bytes  # a generator's session ids are longer than this test's
