"""Audio front end: speech -> one feature row (L, C) per output video frame.

Legend: N rows, L layers, C channels.

``decode_audio`` (any file, ffmpeg) -> ``tempo`` stretch by ``model_fps / fps`` -> x gain ->
a backend (``wav2vec2``: the public checkpoint's (N, 12, 768); ``mel``: weight-free (N, 4, 32)
for the tiny preset) -> rows on a fixed frame grid. ``audio_features`` does a whole clip,
``StreamingAudioFeatures`` the same from pushes of any size, in bounded memory. The rows are what
``liveact.sampling.audio_window.gather_window`` consumes.
"""

from liveact.audio.backend import FeatureBackend, load_backend
from liveact.audio.config import AudioConfig, MelConfig, TempoConfig
from liveact.audio.errors import AudioError, RowsUnavailable
from liveact.audio.frames import frame_count, interpolate_to_frames
from liveact.audio.io import decode_audio, decode_pcm, pcm_from_bytes
from liveact.audio.offline import audio_features, file_features, model_audio
from liveact.audio.stream import FeatureRows, StreamingAudioFeatures
from liveact.audio.tempo import StreamingTempo, tempo_for, tempo_stretch

__all__ = [
    "AudioConfig",
    "AudioError",
    "FeatureBackend",
    "FeatureRows",
    "MelConfig",
    "RowsUnavailable",
    "StreamingAudioFeatures",
    "StreamingTempo",
    "TempoConfig",
    "audio_features",
    "decode_audio",
    "decode_pcm",
    "file_features",
    "frame_count",
    "interpolate_to_frames",
    "load_backend",
    "model_audio",
    "pcm_from_bytes",
    "tempo_for",
    "tempo_stretch",
]
