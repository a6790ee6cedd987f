"""The audio encoder service: a thin gRPC shell (``liveact.v1.AudioEncoder``) over ``liveact.audio``.

Speech PCM in, one feature row per output video frame out, streamed as rows become final.
``python -m services.audio_encoder --help`` lists the settings; ``server.py`` describes the protocol.
"""
