"""Reference-image loading: the bad-input matrix, orientation, fitting, and the tensor round trip."""

from __future__ import annotations

import io
import struct
import wave
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from liveact.media import ImageConfig, ImageError, frames_to_uint8, load_reference_image, to_model_tensor

W, H = 64, 48  # session size used throughout (landscape, so crops are exercised)
GREY = ImageConfig().background


def encode(im: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes = b"") -> bytes:
    """A PNG written by hand (16-bit RGB, or a header declaring a huge size over a tiny body)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def check_rgb(img: np.ndarray, width: int = W, height: int = H) -> None:
    assert img.shape == (height, width, 3)
    assert img.dtype == np.uint8
    assert img.flags["C_CONTIGUOUS"]


# -- huge images --------------------------------------------------------------------------------


def test_8000x8000_jpeg_is_decoded_at_reduced_scale(monkeypatch):
    data = encode(Image.new("RGB", (8000, 8000), (200, 30, 60)), "JPEG", quality=80)
    scales = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        scales.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    img = load_reference_image(data, W, H)
    check_rgb(img)
    assert scales == [(1000, 1000)]  # libjpeg decoded at 1/8 scale: 1000x1000, never 8000x8000
    np.testing.assert_allclose(img[H // 2, W // 2], (200, 30, 60), atol=3)


def test_8000x8000_png_is_handled():
    data = encode(Image.new("L", (8000, 8000), 77), compress_level=1)
    img = load_reference_image(data, W, H)
    check_rgb(img)
    assert (img == 77).all()


def test_above_max_pixels_is_refused_before_decoding():
    data = raw_png(9000, 9000, 8, 0)  # 81 MP header over an empty body: refused before any decode
    with pytest.raises(ImageError, match=r"9000x9000 \(81.0 MP\), above the 67.1 MP limit.*max_pixels"):
        load_reference_image(data, W, H)
    small = encode(Image.new("RGB", (20, 20)))
    with pytest.raises(ImageError, match="downscale"):
        load_reference_image(small, W, H, ImageConfig(max_pixels=100))


def test_decompression_bomb_is_refused():
    data = raw_png(30000, 30000, 8, 0)  # 900 MP declared in a few dozen bytes
    with pytest.raises(ImageError, match="decompression bomb"):
        load_reference_image(data, W, H, ImageConfig(max_pixels=10**10))


# -- modes --------------------------------------------------------------------------------------


def test_grayscale_png():
    img = load_reference_image(encode(Image.new("L", (30, 30), 90)), W, H)
    check_rgb(img)
    assert (img == 90).all()


def test_rgba_png_is_composited_on_neutral_background():
    im = Image.new("RGBA", (40, 30), (255, 0, 0, 128))
    im.paste((0, 0, 255, 0), (0, 0, 40, 15))  # top half fully transparent
    img = load_reference_image(encode(im), W, H)
    check_rgb(img)
    assert tuple(img[2, 2]) == GREY
    # 50% red over grey 128: 255*128/255 + 128*(1 - 128/255) = 191.75, 0 + 63.75
    np.testing.assert_array_equal(img[-2, -2], (192, 64, 64))


def test_la_png_is_composited():
    img = load_reference_image(encode(Image.new("LA", (30, 30), (200, 0))), W, H)
    assert (img == GREY[0]).all()


def test_palette_png():
    im = Image.new("P", (30, 30), 3)
    im.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60, 250, 100, 5])
    img = load_reference_image(encode(im), W, H)
    check_rgb(img)
    assert tuple(img[5, 5]) == (250, 100, 5)
    transparent = load_reference_image(encode(im, transparency=3), W, H)  # tRNS marks index 3 clear
    assert tuple(transparent[5, 5]) == GREY


def test_16bit_grayscale_png_is_scaled_not_clipped():
    rows = b"".join(b"\x00" + np.full(16, 0x8000, ">u2").tobytes() for _ in range(16))
    img = load_reference_image(raw_png(16, 16, 16, 0, rows), W, H)
    check_rgb(img)
    assert (img == 128).all()  # 0x8000 / 256; Pillow's own I;16 -> L conversion would clip it to 255


def test_16bit_rgb_png():
    pixel = np.array([0x8000, 0x4000, 0xFFFF], ">u2")
    rows = b"".join(b"\x00" + np.tile(pixel, 16).tobytes() for _ in range(16))
    img = load_reference_image(raw_png(16, 16, 16, 2, rows), W, H)
    check_rgb(img)
    assert tuple(img[3, 3]) == (128, 64, 255)


# -- orientation and fitting -------------------------------------------------------------------


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (80, 40), (255, 0, 0))
    im.paste((0, 0, 255), (40, 0, 80, 40))  # stored: left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": left becomes top
    img = load_reference_image(encode(im, "JPEG", exif=exif, quality=95), 20, 40)
    check_rgb(img, 20, 40)
    np.testing.assert_allclose(img[2, 10], (255, 0, 0), atol=8)
    np.testing.assert_allclose(img[-3, 10], (0, 0, 255), atol=8)


def test_other_aspect_is_centre_cropped_not_stretched():
    im = Image.new("RGB", (200, 100), (0, 255, 0))
    im.paste((255, 0, 0), (50, 0, 150, 100))  # the centred square is red, the side bands green
    img = load_reference_image(encode(im), 32, 32)
    check_rgb(img, 32, 32)
    # a stretched fit would show the green bands in the outer quarters; Lanczos only tints the edge pixels
    assert (img[:, :, 0] > 200).all() and (img[:, :, 1] < 40).all()
    assert (img[:, 1:-1, 0] > 250).all()


# -- refusals -----------------------------------------------------------------------------------


def test_truncated_jpeg():
    data = encode(Image.effect_noise((64, 64), 60).convert("RGB"), "JPEG")
    with pytest.raises(ImageError, match=r"truncated or corrupt.*re-upload"):
        load_reference_image(data[: len(data) // 2], W, H)


def test_truncated_png():
    data = encode(Image.effect_noise((64, 64), 60).convert("RGB"))
    with pytest.raises(ImageError, match="truncated"):
        load_reference_image(data[: len(data) // 2], W, H)
    with pytest.raises(ImageError, match="starts like a PNG but cannot be read"):
        load_reference_image(data[:40], W, H)  # cut inside the header


def test_garbage_bytes():
    with pytest.raises(ImageError, match=r"unknown content.*not an image: supply a PNG, JPEG or WebP"):
        load_reference_image(np.random.default_rng(0).bytes(1000), W, H)


def test_empty_bytes():
    with pytest.raises(ImageError, match=r"empty \(0 bytes\)"):
        load_reference_image(b"", W, H)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(ImageError, match="empty"):
        load_reference_image(empty, W, H)
    with pytest.raises(ImageError, match="does not exist"):
        load_reference_image(tmp_path / "nope.png", W, H)


def test_wav_file_passed_as_image(tmp_path):
    path = tmp_path / "speech.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(1600, np.int16).tobytes())
    with pytest.raises(ImageError, match="WAV audio file, not an image: pass it as the audio input"):
        load_reference_image(path, W, H)
    assert issubclass(ImageError, ValueError)


def test_image_from_path(tmp_path):
    path = tmp_path / "ref.png"
    path.write_bytes(encode(Image.new("RGB", (30, 30), (1, 2, 3))))
    assert tuple(load_reference_image(path, W, H)[0, 0]) == (1, 2, 3)


# -- tensors ------------------------------------------------------------------------------------


def test_model_tensor_round_trip():
    img = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    t = to_model_tensor(img)
    assert t.shape == (1, 3, H, W) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    assert to_model_tensor(np.full((2, 2, 3), 255, np.uint8)).eq(1).all()
    np.testing.assert_array_equal(frames_to_uint8(t)[0], img)
    video = t[:, :, None].expand(1, 3, 4, H, W)  # (1, 3, T, H, W) as the VAE decodes
    out = frames_to_uint8(video * 1.5)  # out-of-range values are clamped
    assert out.shape == (4, H, W, 3) and out.dtype == np.uint8
    with pytest.raises(ValueError):
        to_model_tensor(img.astype(np.float32))
