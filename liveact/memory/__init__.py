"""ConvKV memory: fixed-length K/V caches with learned depthwise compression."""

from liveact.memory.cache import AttendView, LayerKV, UnboundedLayerKV
from liveact.memory.compress import compress_tokens
from liveact.memory.convkv import ConvKVMemory
from liveact.memory.rollout import RolloutLayerKV

__all__ = ["AttendView", "ConvKVMemory", "LayerKV", "RolloutLayerKV", "UnboundedLayerKV", "compress_tokens"]
