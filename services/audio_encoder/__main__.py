"""``python -m services.audio_encoder``: serve until SIGTERM."""

from services.audio_encoder.server import serve

if __name__ == "__main__":
    serve()
