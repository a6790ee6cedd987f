"""Every service flag explains itself in --help: the settings field's comment, its env variable, its default."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from services.audio_encoder.settings import EncoderSettings
from services.common.settings import field_help
from services.decoder.settings import DecoderSettings
from services.generator.settings import GeneratorSettings


@pytest.mark.parametrize("cls", [GeneratorSettings, DecoderSettings, EncoderSettings])
def test_every_flag_has_an_explanation(cls):
    explained = field_help(cls)
    missing = [f.name for f in dataclasses.fields(cls) if not explained.get(f.name)]
    assert missing == [], f"add a trailing '# what it is' comment to {missing} in {cls.__module__}"


@pytest.mark.integration
def test_generator_help_explains_flags_with_env_and_default():
    out = subprocess.run(
        [sys.executable, "-m", "services.generator", "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    flat = " ".join(out.split())
    assert "--redis-cluster, --no-redis-cluster Redis Cluster: --redis-url names one node" in flat
    assert "--max-sessions MAX_SESSIONS concurrent Animate streams; more are refused with RESOURCE_EXHAUSTED" in flat
    assert "(env LIVEACT_MAX_SESSIONS; default 4)" in flat


def test_checkpoint_budget_flags():
    from services.generator.settings import GeneratorSettings

    peers = ["--audio-encoder", "a:1", "--decoder", "d:1", "--redis-url", "redis://127.0.0.1:1/0"]
    s = GeneratorSettings.parse([*peers, "--checkpoint-mbps", "500", "--checkpoint-max-interval-s", "60"])
    policy = s.checkpoint_policy()
    assert (policy.every_chunks, policy.budget_mbps, policy.max_interval_s) == (4, 500.0, 60.0)
    only_max = GeneratorSettings.parse([*peers, "--checkpoint-every-chunks", "0", "--checkpoint-max-interval-s", "30"])
    assert only_max.checkpoint_policy().due(0, 30.0)
    with pytest.raises(SystemExit):
        GeneratorSettings.parse([*peers, "--checkpoint-mbps", "-1"])
    with pytest.raises(SystemExit):
        GeneratorSettings.parse([*peers, "--checkpoint-every-chunks", "0"])
