"""The chunked autoregressive sampler: chunk plans, audio windows, denoising, the session loop."""

from liveact.sampling.chunking import ChunkPlan, plan_chunk
from liveact.sampling.denoise import ChunkResult, Conditioning, denoise_chunk
from liveact.sampling.noise import RecordedNoise, SeededNoise
from liveact.sampling.stream import StreamingSampler

__all__ = [
    "ChunkPlan",
    "ChunkResult",
    "Conditioning",
    "RecordedNoise",
    "SeededNoise",
    "StreamingSampler",
    "denoise_chunk",
    "plan_chunk",
]
