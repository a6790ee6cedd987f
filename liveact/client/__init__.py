"""Python client of the LiveAct ``Generator`` service (``liveact client`` uses it)."""

from liveact.client.animate import AnimateResult, animate, pcm_chunks

__all__ = ["AnimateResult", "animate", "pcm_chunks"]
