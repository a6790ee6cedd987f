"""Python client of the LiveAct ``Generator`` service (``liveact client`` uses it)."""

from liveact.client.animate import AnimateResult, animate, animate_resumable, pcm_chunks

__all__ = ["AnimateResult", "animate", "animate_resumable", "pcm_chunks"]
