"""LiveAct: real-time, hour-scale, audio-driven human animation (SoulX-LiveAct, arXiv 2603.11746).

The core library, importable without gRPC: ``liveact.config`` (typed presets), ``liveact.model``
(the causal audio DiT), ``liveact.memory`` (the ConvKV cache), ``liveact.sampling`` (the chunked
autoregressive loop).
"""

__version__ = "0.1.0"
