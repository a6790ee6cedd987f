"""The generator service: owns sessions, serves the client-facing ``Animate`` stream, runs the DiT,
and calls the audio encoder and decoder services."""
