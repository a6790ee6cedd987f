"""LiveAct gRPC services: thin shells over the ``liveact`` library (audio_encoder, generator, decoder)."""
