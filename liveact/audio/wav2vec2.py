"""The ``wav2vec2`` backend: transformers ``Wav2Vec2Model`` rows (N, 12, 768), as the public code.

Legend: S samples, T conv frames (50 Hz), N rows (25 per second of stretched audio), L encoder
layers, C hidden size, E conv channels (512).

The weights load from a local directory only (``local_files_only=True``): ``config.json`` plus
``model.safetensors`` or ``pytorch_model.bin``, the TencentGameMate/chinese-wav2vec2-base layout.
``preprocessor_config.json``'s ``do_normalize`` is honoured (default True, as in that checkpoint).

One window, following the public ``get_embedding`` and its ``Wav2Vec2Model.forward(seq_len=...)``:

1. zero-mean / unit-variance normalisation of the window's waveform (Wav2Vec2FeatureExtractor);
2. the conv feature encoder -> (T, E) at 50 Hz;
3. linear interpolation (align_corners) of those *conv* features to N rows, before the
   transformer, so the encoder itself runs at the video rate (what the DiT was trained on);
4. feature projection and the transformer encoder; the L layer outputs (``hidden_states[1:]``,
   captured with forward hooks) are stacked to (N, L, C).

Why a windowed (streamed) row cannot equal the offline row: the waveform normalisation and the
first conv layer's GroupNorm take their statistics over the whole window, the positional conv
(128 taps, 5 s at 25 Hz) sees zero padding at the window edges, and self-attention is global over
the window. So a streamed row depends on where its window starts and ends. ``context_frames`` is
None, the stream uses the public ``--steam_audio`` context (21 rows before, up to 3 after) and the
difference is a tolerance. Measured with *random* weights (no trained checkpoint is fetched; random
attention is near-uniform, so these overstate what a trained, mostly local model does), 12 s of
speech-like audio at 20 fps, stream defaults (blocks of 8):

* tiny (2 x 32): relative RMS error 0.24, mean per-row cosine 0.97 (the test asserts <= 0.30 / >= 0.95);
* wav2vec2-base size (12 x 768): relative RMS 0.34, mean cosine 0.94 (min 0.81), the same in every
  layer; blocks of 32 (a 55-row window, like the public per-chunk slice): 0.25; 100 rows of history:
  0.21; without the waveform normalisation and the GroupNorm: 0.28.

Calls are serialised with a lock: the layer outputs are captured by hooks on the shared model.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from pathlib import Path

import numpy as np
import torch
from transformers import Wav2Vec2Model

from liveact.audio.config import AudioConfig
from liveact.audio.errors import AudioError
from liveact.audio.frames import grid_native_frames, interpolate_to_frames, native_per_frame
from liveact.config import ConfigError

__all__ = ["Wav2Vec2Backend"]

log = logging.getLogger(__name__)

_NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor's zero_mean_unit_var_norm epsilon
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
_PREPROCESSOR = "preprocessor_config.json"


class Wav2Vec2Backend:
    """wav2vec2 hidden states on the frame grid; satisfies ``FeatureBackend``."""

    context_frames: int | None = None

    def __init__(self, model: Wav2Vec2Model, config: AudioConfig, normalize: bool = True) -> None:
        mc = model.config
        if (mc.num_hidden_layers, mc.hidden_size) != (config.layers, config.channels):
            raise ConfigError(
                f"the wav2vec2 model gives {mc.num_hidden_layers} layers x {mc.hidden_size} channels but the "
                f"audio config asks for {config.layers} x {config.channels}: match AudioConfig to the checkpoint"
            )
        self.model = model.eval()
        self.layers, self.channels = config.layers, config.channels
        self.normalize = normalize
        self._lock = threading.Lock()
        self.spf = config.samples_per_frame
        self.per_row = native_per_frame(config, math.prod(mc.conv_stride))
        first = self._conv_frames(1)
        if first < 1 or self._conv_frames(2) != first + self.per_row:
            raise AudioError(
                f"this conv stack (kernels {mc.conv_kernel}, strides {mc.conv_stride}) does not give a fixed "
                f"number of frames per {self.spf}-sample video frame: use the wav2vec2-base conv layout"
            )

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        config: AudioConfig,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Wav2Vec2Backend:
        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise AudioError(f"{str(path)!r} has no config.json: point weights_dir at a local wav2vec2 directory")
        if not any((path / name).is_file() for name in _WEIGHT_FILES):
            raise AudioError(f"{str(path)!r} has no weights (one of {list(_WEIGHT_FILES)}): copy them there")
        model = Wav2Vec2Model.from_pretrained(str(path), local_files_only=True)
        model = model.to(device=device, dtype=dtype)
        return cls(model, config, normalize=_do_normalize(path))

    def _conv_frames(self, n_rows: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(n_rows * self.spf))

    @torch.no_grad()
    def window_features(self, pcm: np.ndarray, n_rows: int) -> torch.Tensor:
        """pcm (n_rows * spf,) -> rows (n_rows, L, C) float32 on the CPU."""
        param = next(self.model.parameters())
        wave = torch.from_numpy(np.asarray(pcm, dtype=np.float32)).double()  # (S,)
        if self.normalize:
            wave = (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + _NORM_EPS)
        wave = wave.to(device=param.device, dtype=param.dtype).unsqueeze(0)  # (1, S)
        conv = self.model.feature_extractor(wave)[0].t()  # (T, E)
        conv = conv[: grid_native_frames(n_rows, self.per_row)]
        rows = interpolate_to_frames(conv, n_rows).unsqueeze(0)  # (1, N, E)
        hidden, _ = self.model.feature_projection(rows)  # (1, N, C)
        captured: list[torch.Tensor] = []
        with self._lock:
            hooks = [layer.register_forward_hook(_capture(captured)) for layer in self.model.encoder.layers]
            try:
                self.model.encoder(hidden)
            finally:
                for hook in hooks:
                    hook.remove()
        return torch.stack(captured, dim=2)[0].float().cpu()  # (N, L, C)


def _capture(store: list[torch.Tensor]):
    def hook(_module, _inputs, output) -> None:
        store.append(output[0] if isinstance(output, tuple) else output)

    return hook


def _do_normalize(path: Path) -> bool:
    pre = path / _PREPROCESSOR
    if not pre.is_file():
        log.info("%s has no %s: normalising the waveform (the chinese-wav2vec2-base setting)", path, _PREPROCESSOR)
        return True
    return bool(json.loads(pre.read_text()).get("do_normalize", True))
