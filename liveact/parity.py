"""Build a LiveAct configuration from a golden fixture's recorded configuration.

The golden fixtures (``../shared/golden``) were made by the public implementation at reduced sizes.
``config_from_fixture`` maps their recorded config onto the same typed config every preset uses and
refuses, naming the keys, anything the code cannot express: an unknown key, or a derived value
(head_dim, RoPE split, slot count, window sizes...) that disagrees with what the code would derive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from liveact.config import ConfigError, LiveActConfig, MemoryConfig, ModelConfig, SamplerConfig
from liveact.memory.convkv import ConvKVMemory
from liveact.model.audio_proj import split_window
from liveact.model.dit import LiveActDiT
from liveact.sampling.audio_window import gather_window, window_index
from liveact.sampling.chunking import plan_chunk, window_video_frames
from liveact.sampling.denoise import Conditioning
from liveact.sampling.noise import RecordedNoise
from liveact.sampling.stream import StreamingSampler

_MODEL_DIRECT = (
    "dim num_heads ffn_dim num_layers freq_dim in_dim out_dim patch_size eps qk_norm cross_attn_norm "
    "text_len text_dim clip_tokens clip_dim audio_window vae_scale audio_layers audio_channels "
    "audio_intermediate_dim audio_output_dim audio_context_tokens norm_input_visual "
    "norm_output_audio rope_theta rope_table_len"
).split()
_MODEL_DERIVED = ("head_dim", "audio_seq_len_vf", "rope_split_complex_pairs", "rope_part_dims", "window_size")
_SESSION_KNOWN = set(
    "latent_h latent_w pixel_h pixel_w tokens_per_latent_frame token_grid fps n_audio_frames "
    "audio_len_s n_chunks chunk_latent_frames window_video_frames window_latent_frames cache_slots "
    "cache_tokens timesteps audio_cfg cfg_steps audio_skipped_at_steps mean_memory fp8_kv_cache "
    "snapshot_after_chunks".split()
)


def config_from_fixture(fixture_config: dict[str, Any], name: str = "golden") -> LiveActConfig:
    model_rec = dict(fixture_config["model"])
    session = dict(fixture_config["session"])
    unknown = sorted(set(model_rec) - set(_MODEL_DIRECT) - set(_MODEL_DERIVED))
    unknown += sorted(f"session.{k}" for k in set(session) - _SESSION_KNOWN)
    if unknown:
        raise ConfigError(f"fixture config has keys this code cannot express: {unknown}")

    kwargs = {k: model_rec[k] for k in _MODEL_DIRECT if k in model_rec}
    kwargs["patch_size"] = tuple(kwargs.get("patch_size", (1, 2, 2)))
    model = ModelConfig(**kwargs)

    first, later = session["chunk_latent_frames"]
    memory = MemoryConfig(
        first_chunk_frames=first,
        chunk_frames=later,
        compressor="mean" if session.get("mean_memory") else "conv",
        fp8=bool(session.get("fp8_kv_cache", False)),
    )
    timesteps = [float(t) for t in session["timesteps"]]
    if timesteps[-1] != 0.0:
        raise ConfigError(f"fixture timesteps must end with the terminal 0, got {timesteps}")
    sampler = SamplerConfig(
        timesteps=tuple(timesteps[:-1]),
        audio_cfg=float(session.get("audio_cfg", 1.0)),
        skip_audio_steps=tuple(session.get("audio_skipped_at_steps", (0,))),
    )
    config = LiveActConfig(name=name, model=model, memory=memory, sampler=sampler)

    derived = {
        "model.head_dim": (model_rec.get("head_dim"), model.head_dim),
        "model.audio_seq_len_vf": (model_rec.get("audio_seq_len_vf"), model.audio_seq_len_vf),
        "model.rope_split_complex_pairs": (model_rec.get("rope_split_complex_pairs"), list(model.rope_split)),
        "model.rope_part_dims": (model_rec.get("rope_part_dims"), [2 * p for p in model.rope_split]),
        "model.window_size": (model_rec.get("window_size"), [-1, -1]),
        "session.cache_slots": (session.get("cache_slots"), memory.total_slots),
        "session.window_latent_frames": (session.get("window_latent_frames"), memory.window_latent_frames),
        "session.window_video_frames": (session.get("window_video_frames"), window_video_frames(config)),
        "session.cfg_steps": (session.get("cfg_steps"), list(sampler.cfg_steps())),
    }
    mismatches = [
        f"{k}: fixture {rec!r}, code {ours!r}" for k, (rec, ours) in derived.items() if rec is not None and rec != ours
    ]
    if mismatches:
        raise ConfigError("fixture config disagrees with what the code derives: " + "; ".join(mismatches))
    return config


# ---------------------------------------------------------------------------------------------
# running a fixture
# ---------------------------------------------------------------------------------------------


@dataclass
class Check:
    """Largest errors of one kind of comparison over every chunk/step/layer it covers."""

    name: str
    tolerance: float  # absolute; 0 means exact
    max_abs: float = 0.0
    max_rel: float = 0.0  # max |a - b| / max |b| per compared tensor
    compared: int = 0
    worst: str = ""
    per_chunk_max_abs: dict[int, float] = field(default_factory=dict)

    def add(self, label: str, ours: torch.Tensor, ref: torch.Tensor, chunk: int | None = None) -> None:
        if tuple(ours.shape) != tuple(ref.shape):
            raise ValueError(f"{label}: shape {tuple(ours.shape)} vs fixture {tuple(ref.shape)}")
        diff = (ours.double() - ref.double()).abs().max().item() if ref.numel() else 0.0
        scale = ref.double().abs().max().item() if ref.numel() else 0.0
        self.compared += 1
        if diff >= self.max_abs:
            self.worst = label
        self.max_abs = max(self.max_abs, diff)
        self.max_rel = max(self.max_rel, diff / scale if scale else 0.0)
        if chunk is not None:
            self.per_chunk_max_abs[chunk] = max(self.per_chunk_max_abs.get(chunk, 0.0), diff)

    @property
    def passed(self) -> bool:
        return self.compared > 0 and self.max_abs <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {
            "tolerance": self.tolerance,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "compared": self.compared,
            "worst": self.worst,
            "per_chunk_max_abs": self.per_chunk_max_abs,
            "passed": self.passed,
        }


# Fixture tensors that no output depends on (documented as such by the fixture's README).
NO_EFFECT_INPUTS = frozenset({"inputs/ref_target_masks"})


@dataclass
class Fixture:
    name: str
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    config: LiveActConfig
    used: set[str] = field(default_factory=set)

    def get(self, key: str) -> torch.Tensor:
        """A fixture tensor, noted as compared/consumed (so nothing in the fixture goes unchecked)."""
        self.used.add(key)
        return self.tensors[key]

    def unchecked(self) -> list[str]:
        return sorted(set(self.tensors) - self.used - NO_EFFECT_INPUTS)

    @classmethod
    def load(cls, directory: str | Path, name: str = "liveact-parity-small") -> Fixture:
        d = Path(directory)
        meta_path, data_path = d / f"{name}.json", d / f"{name}.safetensors"
        for p in (meta_path, data_path):
            if not p.exists():
                raise FileNotFoundError(f"golden fixture file {p} is missing")
        meta = json.loads(meta_path.read_text())
        return cls(name, meta, load_file(str(data_path)), config_from_fixture(meta["config"], name))

    @property
    def n_chunks(self) -> int:
        return int(self.meta["config"]["session"]["n_chunks"])

    def weights(self) -> dict[str, torch.Tensor]:
        return {k.removeprefix("weights/"): self.get(k) for k in self.tensors if k.startswith("weights/")}

    def model(self) -> LiveActDiT:
        from liveact.model.loading import build_model, load_weights

        return load_weights(build_model(self.config), self.weights()).eval()

    def conditioning(self, model: LiveActDiT) -> Conditioning:
        with torch.no_grad():
            context = model.encode_context([self.get("inputs/context")], self.get("inputs/clip_fea"))
        return Conditioning(y=self.get("inputs/y"), context=context)

    def recorded_noise(self) -> RecordedNoise:
        draws = []
        for c in range(self.n_chunks):
            draws.append(self.get(f"chunk{c}/step0/x").unsqueeze(0))
            draws += [self.get(f"chunk{c}/step{i}/renoise").unsqueeze(0) for i in range(self.config.sampler.num_steps)]
        return RecordedNoise(draws)

    def has(self, key: str) -> bool:
        return key in self.tensors


def check_audio_windows(fx: Fixture, model: LiveActDiT) -> tuple[Check, Check]:
    """Exact window tensors per chunk, and the projection's audio tokens within tolerance."""
    exact, tokens = Check("audio_windows", 0.0), Check("audio_tokens", fx.meta["tolerance"]["float_tensors"]["atol"])
    feats = fx.get("inputs/audio_features")
    for c in range(fx.n_chunks):
        idx = window_index(fx.config, c, feats.shape[0])
        window = gather_window(fx.config, feats, c)
        first, later = split_window(window, fx.config.model.vae_scale)
        for label, ours in (("audio_window_idx", idx), ("audio", window), ("audio_first", first), ("audio_vf", later)):
            exact.add(f"chunk{c}/{label}", ours, fx.get(f"chunk{c}/{label}"), c)
        with torch.no_grad():
            tokens.add(f"chunk{c}/audio_tokens", model.project_audio(window), fx.get(f"chunk{c}/audio_tokens"), c)
    return exact, tokens


def _cache_checks(fx: Fixture, memory: Any, chunk: int, check: Check) -> None:
    for step in range(fx.config.sampler.num_steps):
        for layer, kv in enumerate(memory.layers(step)):
            k, v = kv.get(0, fx.config.memory.total_slots)
            key = f"cache/after_chunk{chunk}/step{step}/layer{layer}"
            if fx.has(f"{key}/k"):
                check.add(f"{key}/k", k, fx.get(f"{key}/k"), chunk)
                check.add(f"{key}/v", v, fx.get(f"{key}/v"), chunk)
        for null_step, layers in memory.null.items():
            for layer, kv in enumerate(layers):
                k, v = kv.get(0, fx.config.memory.total_slots)
                key = f"cache_null/after_chunk{chunk}/step{null_step}/layer{layer}"
                if fx.has(f"{key}/k"):
                    check.add(f"{key}/k", k, fx.get(f"{key}/k"), chunk)
                    check.add(f"{key}/v", v, fx.get(f"{key}/v"), chunk)


def run_free(fx: Fixture, model: LiveActDiT) -> dict[str, Check]:
    """Whole rollout with the recorded noise injected; compares every step, final latent and cache."""
    tol = fx.meta["tolerance"]["float_tensors"]["atol"]
    checks = {n: Check(n, tol) for n in ("free_v", "free_x", "free_x_final", "cache")}
    sampler = StreamingSampler(model, fx.conditioning(model), fx.recorded_noise())
    feats = fx.get("inputs/audio_features")
    for c in range(fx.n_chunks):
        result = sampler.next_chunk(feats, record=True)
        for i, st in enumerate(result.steps):
            checks["free_v"].add(f"chunk{c}/step{i}/v", st.v[0], fx.get(f"chunk{c}/step{i}/v"), c)
            checks["free_x"].add(f"chunk{c}/step{i}/x", st.x[0], fx.get(f"chunk{c}/step{i}/x"), c)
            for part in ("v_cond", "v_null"):
                key = f"chunk{c}/step{i}/{part}"
                ours = getattr(st, part)
                if ours is None and part == "v_cond":  # a step without CFG (step 0): its v is the conditional one
                    ours = st.v
                if ours is not None and fx.has(key):
                    checks["free_v"].add(key, ours[0], fx.get(key), c)
        checks["free_x_final"].add(f"chunk{c}/x_final", result.latent[0], fx.get(f"chunk{c}/x_final"), c)
        _cache_checks(fx, sampler.memory, c, checks["cache"])
    return checks


def run_teacher_forced(fx: Fixture, model: LiveActDiT) -> Check:
    """Each step fed the *recorded* input latent; caches built by the loop from those inputs."""
    check = Check("teacher_forced_v", fx.meta["tolerance"]["float_tensors"]["atol"])
    cond = fx.conditioning(model)
    sc = fx.config.sampler
    h, w = cond.y.shape[3:]
    _, ph, pw = fx.config.model.patch_size
    memory = ConvKVMemory(fx.config, frame_tokens=(h // ph) * (w // pw))
    feats = fx.get("inputs/audio_features")
    null_tokens = None
    if sc.cfg_steps():
        null_tokens = model.project_audio(torch.zeros_like(gather_window(fx.config, feats, 0)))
    with torch.no_grad():
        for c in range(fx.n_chunks):
            plan = plan_chunk(fx.config, c)
            a, b = plan.latent_slice
            tokens = model.project_audio(gather_window(fx.config, feats, c))[:, a:b]
            y = cond.y[:, :, a:b]
            for i in range(sc.num_steps):
                x = fx.get(f"chunk{c}/step{i}/x").unsqueeze(0)
                t = fx.get(f"chunk{c}/step{i}/t")
                audio = None if i in sc.skip_audio_steps else tokens
                v = model(x, y, t, cond.context, audio, memory.layers(i), plan.is_first)
                if i in sc.cfg_steps():
                    assert null_tokens is not None
                    vn = model(x, y, t, cond.context, null_tokens[:, a:b], memory.layers(i, null=True), plan.is_first)
                    v = vn + sc.audio_cfg * (v - vn)
                check.add(f"chunk{c}/step{i}/v", v[0], fx.get(f"chunk{c}/step{i}/v"), c)
    return check


def check_timesteps(fx: Fixture) -> Check:
    """The sampler's float32 timesteps (plus the terminal 0) equal the recorded ones exactly."""
    check = Check("timesteps", 0.0)
    ours = torch.tensor([*fx.config.sampler.timesteps, 0.0], dtype=torch.float32)
    check.add("inputs/timesteps", ours, fx.get("inputs/timesteps"))
    for c in range(fx.n_chunks):
        for i in range(fx.config.sampler.num_steps):
            check.add(f"chunk{c}/step{i}/t", ours[i : i + 1], fx.get(f"chunk{c}/step{i}/t"), c)
    return check


def run_all(directory: str | Path, name: str = "liveact-parity-small") -> dict[str, Any]:
    """Every check of a fixture; fails if any fixture tensor was left uncompared."""
    fx = Fixture.load(directory, name)
    model = fx.model()
    exact, tokens = check_audio_windows(fx, model)
    checks = [check_timesteps(fx), exact, tokens, run_teacher_forced(fx, model), *run_free(fx, model).values()]
    unchecked = fx.unchecked()
    return {
        "fixture": name,
        "chunks": fx.n_chunks,
        "checks": {c.name: c.to_dict() for c in checks},
        "unchecked_tensors": unchecked,
        "passed": all(c.passed for c in checks) and not unchecked,
    }
