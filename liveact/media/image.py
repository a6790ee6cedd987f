"""The reference image: decode, normalise and fit it to the session size; convert to/from model tensors.

``load_reference_image`` accepts a path or the file's bytes and returns uint8 RGB (height, width, 3):

1. The header is read first; images above ``ImageConfig.max_pixels`` are refused before any pixel
   is decoded (this also refuses decompression bombs, as does Pillow's own check).
2. JPEGs are decoded at a reduced scale when the target is much smaller (Pillow's ``draft``), so
   an 8000x8000 photo never materialises at full size; other formats decode once at full size.
3. EXIF orientation is applied.
4. Every mode becomes RGB: 16-bit greys are scaled (not clipped) to 8 bits, palettes expanded,
   and transparency (RGBA, LA, palette or tRNS) is composited on ``ImageConfig.background``.
5. Fit: the largest centred region with the target aspect ratio is cropped, then resized to the
   target size (Lanczos, after Pillow's fast integer reduce for big downscales). Nothing is
   letterboxed or stretched; the margins of an image with another aspect ratio are cut.

Every failure raises ``ImageError`` (a ``ValueError``) saying what to fix.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from liveact.media.errors import ImageError

__all__ = ["ImageConfig", "ImageError", "ImageSource", "load_reference_image", "to_model_tensor"]

ImageSource = str | os.PathLike | bytes | bytearray | memoryview

_ROTATING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_AUDIO_ADVICE = "not an image: pass it as the audio input, and a PNG, JPEG or WebP portrait as the image"
_CORRUPT_ADVICE = "but cannot be read (truncated or corrupt): re-export or re-upload the complete file"
_SIGNATURES = (  # (offset, magic, what the reader is told) for content Pillow cannot identify
    (8, b"WAVE", f"is a WAV audio file, {_AUDIO_ADVICE}"),
    (0, b"ID3", f"is an MP3 audio file, {_AUDIO_ADVICE}"),
    (0, b"OggS", f"is an Ogg audio file, {_AUDIO_ADVICE}"),
    (0, b"fLaC", f"is a FLAC audio file, {_AUDIO_ADVICE}"),
    (4, b"ftyp", "is an MP4/MOV video, not an image: extract a still frame as PNG or JPEG"),
    (0, b"%PDF", "is a PDF document, not an image: export the portrait as PNG or JPEG"),
    (0, b"\x89PNG", f"starts like a PNG {_CORRUPT_ADVICE}"),
    (0, b"\xff\xd8\xff", f"starts like a JPEG {_CORRUPT_ADVICE}"),
)
_SNIFF_BYTES = 16


@dataclass(frozen=True)
class ImageConfig:
    max_pixels: int = 8192 * 8192  # an 8K square; larger images are refused before decoding
    background: tuple[int, int, int] = (128, 128, 128)  # neutral grey under transparent pixels
    reducing_gap: float = 3.0  # Pillow: integer-reduce until within this factor of the target, then filter


def load_reference_image(
    source: ImageSource, width: int, height: int, config: ImageConfig = ImageConfig()
) -> np.ndarray:
    """Decode ``source`` and fit it to (height, width, 3) uint8 RGB (centre crop to the aspect, then resize)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    label, opened = _open(source)
    with opened as im:
        w, h = im.size
        if w * h > config.max_pixels:
            raise ImageError(
                f"{label} is {w}x{h} ({w * h / 1e6:.1f} MP), above the {config.max_pixels / 1e6:.1f} MP limit "
                "(ImageConfig.max_pixels); downscale it before uploading"
            )
        try:
            fitted = _decode_fitted(im, width, height, config)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageError(
                f"{label} could not be decoded ({exc}); it is probably truncated or corrupt: "
                "re-export or re-upload the complete file"
            ) from None
    return _to_rgb_array(fitted, config.background)


def to_model_tensor(
    img: np.ndarray, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> (1, 3, H, W) in [-1, 1] (0 -> -1, 255 -> 1)."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(
            f"expected a uint8 (H, W, 3) RGB array, got {getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')}"
        )
    pixels = np.ascontiguousarray(img) if img.flags.writeable else np.array(img)  # torch wants writable memory
    t = torch.from_numpy(pixels).to(device).permute(2, 0, 1)[None]  # (1, 3, H, W)
    return (t.to(torch.float32) / 127.5 - 1.0).to(dtype)


# ---------------------------------------------------------------------------------------------


def _open(source: ImageSource) -> tuple[str, Image.Image]:
    """Open lazily (header only); refuse missing, empty and unidentifiable input with a reason."""
    if isinstance(source, bytes | bytearray | memoryview):
        label, data, handle = "the reference image", bytes(source[:_SNIFF_BYTES]), io.BytesIO(source)
        size = len(source)
    else:
        path = Path(source)
        label = f"reference image {path}"
        if not path.is_file():
            raise ImageError(f"{label} does not exist or is not a file; check the path")
        size = path.stat().st_size
        with path.open("rb") as f:
            data = f.read(_SNIFF_BYTES)
        handle = path
    if size == 0:
        raise ImageError(f"{label} is empty (0 bytes); supply a PNG, JPEG or WebP portrait")
    try:
        return label, Image.open(handle)
    except UnidentifiedImageError:
        raise ImageError(f"{label} {_describe(data, size)}") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{label} was refused as a possible decompression bomb ({exc}); downscale it first") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{label} could not be read ({exc}); re-export it as PNG or JPEG") from None


def _describe(head: bytes, size: int) -> str:
    for offset, magic, message in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return message
    return (
        f"is {size} bytes of unknown content (starting {head[:8].hex(' ')}), not an image: "
        "supply a PNG, JPEG or WebP portrait"
    )


def _decode_fitted(im: Image.Image, width: int, height: int, config: ImageConfig) -> Image.Image:
    """Decode (JPEG at a reduced scale when possible), orient, normalise the mode, crop and resize."""
    rotated = im.getexif().get(_EXIF_ORIENTATION) in _ROTATING_ORIENTATIONS  # PNG: reads to the eXIf chunk
    draft_w, draft_h = (height, width) if rotated else (width, height)
    if im.format == "JPEG":
        im.draft(None, (int(draft_w * config.reducing_gap), int(draft_h * config.reducing_gap)))
    im.load()
    im = _normalise_mode(ImageOps.exif_transpose(im))
    box = _centre_box(im.size, width, height)
    return im.resize((width, height), Image.Resampling.LANCZOS, box=box, reducing_gap=config.reducing_gap)


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Bring any mode to L, RGB (opaque) or La, RGBa (premultiplied alpha), which resize handles well."""
    if im.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(im)  # uint16 for I;16*, int32 for I (read as a 16-bit range)
        if values.dtype.kind != "u":
            values = np.clip(values, 0, np.iinfo(np.uint16).max)
        im = Image.fromarray((values >> 8).astype(np.uint8))  # 16 -> 8 bits by scaling, not clipping
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        return im.convert("RGBA").convert("RGBa") if im.mode not in ("LA", "La") else im.convert("La")
    if im.mode in ("L", "RGB"):
        return im
    return im.convert("RGB")


def _centre_box(size: tuple[int, int], width: int, height: int) -> tuple[float, float, float, float]:
    """The largest centred box of the source with the target's aspect ratio."""
    w, h = size
    if w * height > h * width:  # source is wider: cut the sides
        crop_w = h * width / height
        return ((w - crop_w) / 2, 0.0, (w + crop_w) / 2, float(h))
    crop_h = w * height / width
    return (0.0, (h - crop_h) / 2, float(w), (h + crop_h) / 2)


def _to_rgb_array(im: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB; premultiplied alpha is composited: out = colour + background * (1 - alpha)."""
    arr = np.asarray(im)
    if im.mode == "L":
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if im.mode == "RGB":
        return np.ascontiguousarray(arr)
    colour, alpha = arr[..., :-1].astype(np.float32), arr[..., -1:].astype(np.float32) / 255.0
    out = colour + np.asarray(background, np.float32) * (1.0 - alpha)  # La broadcasts its grey to RGB
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
