"""Media I/O: the reference image in, encoded video (MP4, fragmented MP4, PNG frames) out, ffprobe.

Every ffmpeg child is bounded in time and memory and cleaned up on close and on error; see
``process`` for the rules, ``timing`` for how frames and audio are stamped.
"""

from liveact.media.encoder import EncoderConfig
from liveact.media.errors import FfmpegError, ImageError, MediaError
from liveact.media.frames import DEFAULT_JPEG_QUALITY, encode_jpeg, frames_to_uint8
from liveact.media.image import ImageConfig, load_reference_image, to_model_tensor
from liveact.media.probe import MediaInfo, StreamInfo, probe, video_frame_times
from liveact.media.video import FragmentedMp4Stream, Mp4Writer, PngFrameWriter

__all__ = [
    "DEFAULT_JPEG_QUALITY",
    "EncoderConfig",
    "FfmpegError",
    "FragmentedMp4Stream",
    "ImageConfig",
    "ImageError",
    "MediaError",
    "MediaInfo",
    "Mp4Writer",
    "PngFrameWriter",
    "StreamInfo",
    "encode_jpeg",
    "frames_to_uint8",
    "load_reference_image",
    "probe",
    "to_model_tensor",
    "video_frame_times",
]
