"""Synthetic training data for the built-in tiny model: procedurally rendered talking heads.

* ``face``    - ``Identity`` (sampled look) + ``FaceState`` (per-frame mouth, blink, pose) -> an RGB frame.
* ``speech``  - random sentences spoken by espeak-ng; mouth opening and width per frame from the audio.
* ``motion``  - head motion that follows prosody, and blinks.
* ``clip``    - ``synth_clip(seed, seconds)`` (a whole clip with its ground truth) and dataset directories.
* ``measure`` - the mouth opening read back from pixels alone, for judging generated video.

Legend: T video frames, S audio samples (16 kHz mono), H = W = the frame size.
"""

from liveact.data.clip import Clip, clip_seed, read_clip, read_dataset_info, synth_clip, write_dataset
from liveact.data.face import NEUTRAL, FaceRenderer, FaceState, Identity, render
from liveact.data.measure import locate_mouth, mouth_opening
from liveact.data.motion import blink_track, head_motion
from liveact.data.speech import SpeechStyle, mouth_from_audio, random_sentence, speak

__all__ = [
    "NEUTRAL",
    "Clip",
    "FaceRenderer",
    "FaceState",
    "Identity",
    "SpeechStyle",
    "blink_track",
    "clip_seed",
    "head_motion",
    "locate_mouth",
    "mouth_from_audio",
    "mouth_opening",
    "random_sentence",
    "read_clip",
    "read_dataset_info",
    "render",
    "speak",
    "synth_clip",
    "write_dataset",
]
