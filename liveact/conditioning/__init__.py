"""Per-session conditioning: the text context and CLIP image tokens the DiT cross-attends to.

``session`` picks a preset's encoders (``build_encoders``) and caches a session's results;
``tiny`` holds the weight-free encoders of the tiny preset; ``text`` (umT5-XXL) and ``image``
(CLIP ViT-H/14) load Wan's checkpoints into transformers models for ``liveact-18b``. The real
encoders are imported on demand, so the tiny path never imports the transformers models.
"""

from liveact.conditioning.session import (
    ConditioningCache,
    ConditioningEncoders,
    EncoderPair,
    ImageEncoder,
    TextEncoder,
    build_encoders,
    clear_encoder_cache,
)
from liveact.conditioning.tiny import TinyImageTokenizer, TinyTextEncoder

__all__ = [
    "ConditioningCache",
    "ConditioningEncoders",
    "EncoderPair",
    "ImageEncoder",
    "TextEncoder",
    "TinyImageTokenizer",
    "TinyTextEncoder",
    "build_encoders",
    "clear_encoder_cache",
]
