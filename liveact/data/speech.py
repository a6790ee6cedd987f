"""Speech for the synthetic clips, and what the mouth does while it plays.

* ``random_sentence`` - a sentence of common English words (a built-in list, no files).
* ``SpeechStyle``     - an espeak-ng voice (language variant + voice variant), speed, pitch and level.
* ``speak``           - text -> (S,) float32 mono at 16 kHz: espeak-ng writes a WAV, ``liveact.audio``
                        decodes and resamples it (ffmpeg), so the audio goes through the project's decoder.
* ``mouth_from_audio`` - per video frame, how open and how wide the mouth is, from the sound alone:
                        opening from the loudness envelope, width from the spectral balance (front
                        vowels such as "ee" carry energy high up, rounded back vowels such as "oo" do
                        not), both a little ahead of the sound (``VISUAL_LEAD_S``): lips move before
                        the sound they shape is heard.
* ``frame_rms`` / ``frame_pitch`` - per-frame loudness and fundamental frequency (prosody for head motion).

Frame k of a clip at ``fps`` covers samples ``[k, k + 1) * sample_rate / fps``; its features are taken
at the frame's centre, plus the lead where there is one.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "ESPEAK",
    "SAMPLE_RATE",
    "VISUAL_LEAD_S",
    "WORDS",
    "SpeechStyle",
    "frame_count",
    "frame_pitch",
    "frame_rms",
    "mouth_from_audio",
    "random_sentence",
    "speak",
]

ESPEAK = "espeak-ng"
SAMPLE_RATE = 16_000  # Hz, the model's audio rate
VISUAL_LEAD_S = 0.075  # the mouth at frame t shows the sound at t + this: lips lead the audio by 50-100 ms
SPEAK_TIMEOUT_S = 60.0

# espeak-ng voices that ship with Debian's espeak-ng-data (``espeak-ng --voices=en``; mbrola ones need extra
# packages) and voice variants (``espeak-ng --voices=variant``): "en+f3" = British English, female variant 3.
LANGUAGES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt3")
WPM_RANGE = (130, 185)  # words per minute
PITCH_RANGE = (25, 75)  # espeak-ng's 0..99 pitch scale
GAIN_DB_RANGE = (-8.0, 0.0)  # level variation between clips, after normalising to TARGET_PEAK
TARGET_PEAK = 0.7  # a clip's speech is scaled to this peak before its gain
SENTENCE_WORDS = (4, 11)  # words per sentence, inclusive range

# mouth targets
ENVELOPE_HOP_S = 0.005  # envelope and spectrum rate: 200 per second, well above any video frame rate
SPECTRUM_WINDOW = 512  # samples (32 ms at 16 kHz) per spectrum for the width
ATTACK_S, RELEASE_S = 0.012, 0.045  # the mouth opens faster than it closes (time constants)
OPEN_REFERENCE_PERCENTILE = 95  # envelope level (over the clip) that maps to a fully open mouth
MIN_REFERENCE_RMS = 1e-3  # (-60 dBFS) below this the clip is silence: the reference never drops lower
OPEN_GATE = 0.06  # envelope below this fraction of the reference leaves the mouth closed (breath, noise)
OPEN_POWER = 0.6  # compressive curve: quiet syllables still open the mouth visibly
LOW_BAND_HZ = (200.0, 1000.0)  # first formant region (every vowel has energy here)
HIGH_BAND_HZ = (1700.0, 4000.0)  # second/third formant region of front vowels ("ee", "ay")
BALANCE_DB_NARROW, BALANCE_DB_WIDE = -22.0, -2.0  # high/low balance -> width 0 and 1 (espeak: boot ~-20, beet ~-3)
WIDTH_SMOOTH_S = 0.06  # energy-weighted smoothing of the width (time constant)
NEUTRAL_WIDTH = 0.5  # the width during silence
PITCH_RANGE_HZ = (70.0, 400.0)
VOICED_CORRELATION = 0.45  # normalised autocorrelation peak above this: the frame is voiced

WORDS = tuple(
    """
    the a an one two three four five six seven ten some many every each this that these those my your his her
    our their its I you he she we they it me him us them who what where when why how which here there now then
    today tomorrow yesterday always never often sometimes soon later again still just only also very really quite
    too much more most less little big small long short high low old new young good bad great fine nice happy sad
    warm cold hot cool bright dark quiet loud early late fast slow easy hard open closed full empty clean green
    blue red yellow white black brown golden silver round square deep wide narrow sweet sharp soft heavy light
    is are was were be been have has had do does did will would can could should may might must go goes went come
    comes came see saw look looks find found make made take took give gave get got know knew think thought tell
    told say said ask asked feel felt keep kept leave left bring brought begin began run ran walk walked talk
    talked sing sang play played read write wrote speak spoke listen hear heard watch help need want like love
    live lived work worked call called try tried move moved turn turned start started stop stopped wait waited
    carry build built grow grew learn learned teach taught open close follow remember forget change answer
    house home room door window table chair bed kitchen garden street road city town village country river lake
    sea ocean beach island mountain hill forest tree flower grass stone rock field farm bridge station market
    school office shop library museum church park train bus car boat plane bicycle ship ticket letter book paper
    pen picture music song story word name voice sound idea question answer problem reason plan game team family
    friend mother father sister brother child children baby people man woman boy girl teacher doctor farmer
    driver singer painter neighbour king queen captain student morning evening night day week month year hour
    minute moment summer winter spring autumn weather rain snow wind sun moon star sky cloud fire water air light
    bread apple orange cheese coffee tea milk sugar salt soup dinner lunch breakfast cake fish bird dog cat horse
    cow sheep rabbit mouse bear lion tiger monkey elephant clock phone radio camera computer machine engine
    garden key box bag coat hat shoe glass cup plate spoon knife basket bottle candle lamp mirror map
    and but or so because if while after before until since with without about over under near far behind
    between inside outside through across along around into onto from to of for by at on in up down
    """.split()
)


@dataclass(frozen=True)
class SpeechStyle:
    """How one clip's speaker sounds: an espeak-ng voice name, speed, pitch and level."""

    voice: str = "en"  # espeak-ng -v: a language, optionally "+variant" ("en-us+f3")
    words_per_minute: int = 160
    pitch: int = 50  # 0..99
    gain_db: float = 0.0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> SpeechStyle:
        language = LANGUAGES[rng.integers(len(LANGUAGES))]
        variant = VARIANTS[rng.integers(len(VARIANTS))]
        return cls(
            voice=f"{language}+{variant}" if variant else language,
            words_per_minute=int(rng.integers(WPM_RANGE[0], WPM_RANGE[1] + 1)),
            pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
            gain_db=float(rng.uniform(*GAIN_DB_RANGE)),
        )


def random_sentence(rng: np.random.Generator) -> str:
    """A sentence of SENTENCE_WORDS random common words, capitalised, ending in '.', '?' or '!'."""
    n = int(rng.integers(SENTENCE_WORDS[0], SENTENCE_WORDS[1] + 1))
    words = [WORDS[i] for i in rng.integers(len(WORDS), size=n)]
    words[0] = words[0][0].upper() + words[0][1:]
    return " ".join(words) + str(rng.choice([".", ".", ".", "?", "!"]))


def speak(
    text: str,
    voice: str = "en",
    words_per_minute: int = 160,
    pitch: int = 50,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """``text`` spoken by espeak-ng -> (S,) float32 mono at ``sample_rate``.

    espeak-ng is deterministic: the same arguments give the same samples (randomness, such as which
    voice, comes from the caller's ``SpeechStyle.sample``). It writes a WAV file rather than
    ``--stdout``, whose streamed header has no length and makes ffmpeg warn about a corrupt packet.
    """
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise RuntimeError(
            f"{ESPEAK} is not installed (needed to synthesise speech): apt-get install espeak-ng, or run scripts/setup"
        )
    from liveact.audio.io import decode_audio  # torch-free module, but liveact.audio's package imports torch

    with tempfile.TemporaryDirectory(prefix="liveact-speak-") as tmp:
        wav = Path(tmp) / "speech.wav"
        cmd = [exe, "-v", voice, "-s", str(words_per_minute), "-p", str(pitch), "-w", str(wav), "--", text]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=SPEAK_TIMEOUT_S)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(
                f"{ESPEAK} failed for voice {voice!r}: {exc.stderr.decode(errors='replace').strip()}"
            ) from None
        return decode_audio(wav, sample_rate=sample_rate, min_duration_s=0.0)


def frame_count(n_samples: int, sample_rate: int, fps: float) -> int:
    """Video frames for ``n_samples`` of audio: round(duration * fps)."""
    return round(n_samples / sample_rate * fps)


def frame_rms(pcm: np.ndarray, sample_rate: int, fps: float, offset_s: float = 0.0) -> np.ndarray:
    """(S,) -> (T,) RMS of the audio each frame covers, shifted by ``offset_s`` (zero outside the clip)."""
    t = frame_count(len(pcm), sample_rate, fps)
    spf = sample_rate / fps
    starts = np.round(np.arange(t) * spf + offset_s * sample_rate).astype(np.int64)  # (T,)
    out = np.zeros(t, np.float32)
    for k, s in enumerate(starts):
        seg = pcm[max(s, 0) : max(s + round(spf), 0)]
        out[k] = np.sqrt(np.mean(np.square(seg, dtype=np.float64))) if seg.size else 0.0
    return out


def _envelope(pcm: np.ndarray, sample_rate: int, window: int, hop: int) -> np.ndarray:
    """(S,) -> (J,) RMS over ``window`` samples centred on j * hop."""
    sq = np.concatenate([[0.0], np.cumsum(np.square(pcm, dtype=np.float64))])  # (S+1,)
    centres = np.arange(0, len(pcm) + hop, hop)  # (J,)
    lo = np.clip(centres - window // 2, 0, len(pcm))
    hi = np.clip(centres + window - window // 2, 0, len(pcm))
    return np.sqrt((sq[hi] - sq[lo]) / window).astype(np.float32)


def _attack_release(x: np.ndarray, hop_s: float, attack_s: float, release_s: float) -> np.ndarray:
    """One-pole smoothing that follows rises with ``attack_s`` and falls with ``release_s``."""
    up, down = 1 - np.exp(-hop_s / attack_s), 1 - np.exp(-hop_s / release_s)
    out = np.empty_like(x)
    y = 0.0
    for j, v in enumerate(x.tolist()):
        y += (up if v > y else down) * (v - y)
        out[j] = y
    return out


def _band_balance(pcm: np.ndarray, sample_rate: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """(S,) -> balance_db (J,), energy (J,): high-band / low-band energy in dB per spectrum, and the energy."""
    pad = SPECTRUM_WINDOW // 2
    padded = np.pad(pcm.astype(np.float32), (pad, pad + hop))
    j = len(pcm) // hop + 1
    idx = np.arange(j)[:, None] * hop + np.arange(SPECTRUM_WINDOW)[None, :]  # (J, W)
    spec = np.abs(np.fft.rfft(padded[idx] * np.hanning(SPECTRUM_WINDOW).astype(np.float32), axis=1)) ** 2  # (J, F)
    freqs = np.fft.rfftfreq(SPECTRUM_WINDOW, 1 / sample_rate)
    low = spec[:, (freqs >= LOW_BAND_HZ[0]) & (freqs < LOW_BAND_HZ[1])].sum(axis=1)  # (J,)
    high = spec[:, (freqs >= HIGH_BAND_HZ[0]) & (freqs < HIGH_BAND_HZ[1])].sum(axis=1)
    tiny = 1e-12
    return 10 * np.log10((high + tiny) / (low + tiny)), low + high


def _sample_at_frames(track: np.ndarray, hop_s: float, n_frames: int, fps: float, offset_s: float) -> np.ndarray:
    """(J,) on the hop grid -> (T,) at frame centres + ``offset_s`` (linear, held at the ends)."""
    times = (np.arange(n_frames) + 0.5) / fps + offset_s
    return np.interp(times, np.arange(len(track)) * hop_s, track).astype(np.float32)


def mouth_from_audio(
    pcm: np.ndarray, sample_rate: int = SAMPLE_RATE, fps: float = 20.0, lead_s: float = VISUAL_LEAD_S
) -> np.ndarray:
    """(S,) speech -> (T, 2) float32: [:, 0] mouth opening, [:, 1] mouth width, both in [0, 1].

    Opening: RMS over about one frame, smoothed with a fast attack and a slower release, divided by
    the clip's ``OPEN_REFERENCE_PERCENTILE`` level, gated and raised to ``OPEN_POWER`` (compressive)
    so that ordinary speech spans most of [0, 1] and silence gives 0. Width: the balance of energy
    above ``HIGH_BAND_HZ`` against ``LOW_BAND_HZ`` (front vowels wide, rounded back vowels narrow),
    averaged with energy weights so that silence relaxes to ``NEUTRAL_WIDTH``. Frame t shows the
    audio at its centre + ``lead_s``.
    """
    pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
    n_frames = frame_count(len(pcm), sample_rate, fps)
    hop = max(1, round(ENVELOPE_HOP_S * sample_rate))
    hop_s = hop / sample_rate
    window = max(hop, round(sample_rate / fps))  # about one video frame
    env = _attack_release(_envelope(pcm, sample_rate, window, hop), hop_s, ATTACK_S, RELEASE_S)  # (J,)
    level = _sample_at_frames(env, hop_s, n_frames, fps, lead_s)  # (T,)
    reference = max(float(np.percentile(level, OPEN_REFERENCE_PERCENTILE)) if n_frames else 0.0, MIN_REFERENCE_RMS)
    opening = np.clip((level / reference - OPEN_GATE) / (1 - OPEN_GATE), 0.0, 1.0) ** OPEN_POWER

    balance, energy = _band_balance(pcm, sample_rate, hop)  # (J,) each
    raw = np.clip((balance - BALANCE_DB_NARROW) / (BALANCE_DB_WIDE - BALANCE_DB_NARROW), 0.0, 1.0)
    weight = energy / max(float(energy.max()), 1e-12)  # (J,) 0..1
    prior = 1e-3  # a little weight on the neutral width: silence and near-silence relax to it
    num = _attack_release(weight * raw + prior * NEUTRAL_WIDTH, hop_s, WIDTH_SMOOTH_S, WIDTH_SMOOTH_S)
    den = _attack_release(weight + prior, hop_s, WIDTH_SMOOTH_S, WIDTH_SMOOTH_S)
    width = _sample_at_frames(num / np.maximum(den, 1e-12), hop_s, n_frames, fps, lead_s)
    return np.stack([opening, width], axis=1).astype(np.float32)


def frame_pitch(pcm: np.ndarray, sample_rate: int, fps: float) -> np.ndarray:
    """(S,) -> (T,) fundamental frequency per frame in Hz, 0 where unvoiced (normalised autocorrelation)."""
    n_frames = frame_count(len(pcm), sample_rate, fps)
    min_lag = int(sample_rate / PITCH_RANGE_HZ[1])
    max_lag = int(sample_rate / PITCH_RANGE_HZ[0])
    window = max(round(sample_rate / fps), 2 * max_lag)
    centres = np.round((np.arange(n_frames) + 0.5) * sample_rate / fps).astype(np.int64)
    padded = np.pad(pcm.astype(np.float32), (window, window))
    idx = (centres + window - window // 2)[:, None] + np.arange(window)[None, :]  # (T, W)
    seg = padded[idx]
    seg = seg - seg.mean(axis=1, keepdims=True)
    n_fft = 1 << int(np.ceil(np.log2(2 * window)))
    ac = np.fft.irfft(np.abs(np.fft.rfft(seg, n_fft, axis=1)) ** 2, axis=1)[:, : max_lag + 1]  # (T, L)
    ac = ac / np.maximum(ac[:, :1], 1e-9)
    lag = min_lag + np.argmax(ac[:, min_lag:], axis=1)
    peak = ac[np.arange(n_frames), lag]
    return np.where(peak > VOICED_CORRELATION, sample_rate / lag, 0.0).astype(np.float32)
