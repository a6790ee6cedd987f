"""``StreamingSampler``: the chunked autoregressive loop of one session.

It owns the session's ConvKV memory, conditioning and noise source, and turns audio features
into clean latents one chunk at a time; nothing it holds grows with the number of chunks.
"""

from __future__ import annotations

import torch

from liveact.memory.convkv import ConvKVMemory
from liveact.model.dit import LiveActDiT
from liveact.sampling.audio_window import gather_window
from liveact.sampling.chunking import plan_chunk
from liveact.sampling.denoise import ChunkResult, Conditioning, denoise_chunk
from liveact.sampling.noise import NoiseSource


class StreamingSampler:
    def __init__(
        self,
        model: LiveActDiT,
        cond: Conditioning,
        noise: NoiseSource,
        unbounded: bool = False,
    ) -> None:
        self.model = model
        self.config = model.config
        self.noise = noise
        m = self.config.model
        _, _, frames, h, w = cond.y.shape
        if frames != self.config.memory.window_latent_frames:
            raise ValueError(
                f"conditioning y must span {self.config.memory.window_latent_frames} latent frames, got {frames}"
            )
        ph, pw = m.patch_size[1:]
        if h % ph or w % pw:
            raise ValueError(f"latent grid {h}x{w} is not divisible by the patch {ph}x{pw}")
        if self.config.sampler.cfg_steps() and cond.null_audio is None:
            zeros = torch.zeros(1, 1 + (frames - 1) * m.vae_scale, m.audio_window, m.audio_layers, m.audio_channels)
            cond.null_audio = model.project_audio(zeros.to(cond.y.device))
        self.cond = cond
        self.memory = ConvKVMemory(
            self.config,
            frame_tokens=(h // ph) * (w // pw),
            batch=cond.y.shape[0],
            heads=model.local_heads,  # a tensor-parallel rank caches its heads only
            dtype=model.dtype,
            device=cond.y.device,
            unbounded=unbounded,
        )
        self.chunk_index = 0
        self._reading: torch.cuda.Event | None = None  # a snapshot copy still reading the persistent slots (CUDA)

    @torch.no_grad()
    def next_chunk(self, audio: torch.Tensor, record: bool = False) -> ChunkResult:
        """Generate the next chunk.

        audio: the session's feature rows (N, L, Ca), from which the chunk's window is gathered, or
        the chunk's window itself (1, Fv, W, L, Ca), e.g. from ``StreamingAudioFeatures.chunk_window``.
        """
        plan = plan_chunk(self.config, self.chunk_index)
        window = audio if audio.dim() == 5 else gather_window(self.config, audio, plan.index)
        if self._reading is not None and self.memory.will_compact:  # a GPU-side wait, once the copy is long done
            torch.cuda.current_stream(self.cond.y.device).wait_event(self._reading)
            self._reading = None
        tokens = self.model.project_audio(window.to(self.cond.y.device))
        result = denoise_chunk(self.model, self.memory, self.cond, tokens, plan, self.noise, record)
        self.chunk_index += 1
        return result

    def export_memory(self, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """The memory's persistent state, copied to ``device`` (None: where the caches are)."""
        return self.memory.export(self.model.compressor_weights(), device)

    def memory_views(self) -> dict[str, torch.Tensor]:
        """``export_memory``'s names as views of the caches (no copy), after the eager compression."""
        return self.memory.views(self.model.compressor_weights())

    def memory_specs(self) -> dict[str, tuple[torch.Size, torch.dtype]]:
        """``memory_views``' names, shapes and dtypes, without the compression (nothing changes)."""
        return self.memory.view_specs()

    def read_until(self, event: torch.cuda.Event | None) -> None:
        """A copy of ``memory_views`` runs on another CUDA stream until ``event``: the chunk that next
        rewrites the persistent slots waits for it on the device (None: the copy is done already)."""
        self._reading = event

    def import_memory(self, tensors: dict[str, torch.Tensor]) -> None:
        self.memory.load(tensors)
        self.chunk_index = self.memory.chunks_written
