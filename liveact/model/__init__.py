"""The causal audio DiT (Wan2.1 I2V + audio cross-attention + ConvKV memory)."""

from liveact.model.dit import LiveActDiT

__all__ = ["LiveActDiT"]
