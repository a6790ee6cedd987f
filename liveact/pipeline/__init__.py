"""The one-process pipeline: reference image + speech -> video, chunk by chunk (``liveact animate``)."""

from liveact.pipeline.engine import Engine, load_engine
from liveact.pipeline.session import AnimationSession, VideoChunk, chunks_needed, prepare_sampler

__all__ = ["AnimationSession", "Engine", "VideoChunk", "chunks_needed", "load_engine", "prepare_sampler"]
