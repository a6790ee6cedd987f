"""The one-process pipeline: reference image + speech -> video, chunk by chunk (``liveact animate``)."""

from liveact.pipeline.engine import Engine, load_engine
from liveact.pipeline.session import AnimationSession, VideoChunk

__all__ = ["AnimationSession", "Engine", "VideoChunk", "load_engine"]
