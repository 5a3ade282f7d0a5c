"""tim.images: every kind of file a user may have becomes an upright RGB picture or a clear ImageError,
and letterbox padding keeps the picture's shape."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tim.images import DECODE_SCALE, Box, ImageError, load_rgb, prepare, square

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 160, 0)


def quadrants(w=60, h=40):
    """Red top-left quadrant on blue: shows where the picture's top-left corner ends up."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:] = BLUE
    a[: h // 2, : w // 2] = RED
    return Image.fromarray(a)


def close(pixel, colour, tol=40):
    return all(abs(int(p) - c) <= tol for p, c in zip(pixel, colour))


def png_header(width, height) -> bytes:
    """A PNG that only declares its size: the cheapest decompression bomb."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# ---- image kinds that must load


def test_non_square_jpeg_keeps_its_size(tmp_path):
    path = tmp_path / "wide.jpg"
    Image.new("RGB", (400, 100), GREEN).save(path)
    img = load_rgb(path)
    assert img.mode == "RGB" and img.size == (400, 100)


def test_grayscale_becomes_rgb_with_equal_channels(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1)), "L").save(path)
    a = np.asarray(load_rgb(path))
    assert a.shape == (8, 64, 3)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    assert a[0, 0, 0] == 0 and a[0, -1, 0] == 252


def test_rgba_transparent_areas_become_white_not_black(tmp_path):
    a = np.zeros((10, 20, 4), np.uint8)
    a[:, :10] = (255, 0, 0, 255)  # opaque red left half, fully transparent right half
    path = tmp_path / "alpha.png"
    Image.fromarray(a, "RGBA").save(path)
    img = load_rgb(path)
    assert img.mode == "RGB"
    assert img.getpixel((2, 5)) == RED
    assert img.getpixel((15, 5)) == (255, 255, 255)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (20, 10), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (10, 0, 20, 10))  # right half: index 1 (blue), made transparent below
    path = tmp_path / "palette.png"
    img.save(path, transparency=1)
    out = load_rgb(path)
    assert out.mode == "RGB"
    assert out.getpixel((2, 5)) == RED
    assert out.getpixel((15, 5)) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (30, 20), (0, 255, 255, 0)).save(path)  # no cyan, full magenta+yellow: red
    img = load_rgb(path)
    assert img.mode == "RGB" and img.size == (30, 20)
    assert close(img.getpixel((15, 10)), RED)


def test_16_bit_grayscale_is_scaled_not_clipped_to_white(tmp_path):
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16)
    path = tmp_path / "sixteen.png"
    Image.fromarray(np.tile(ramp, (4, 1))).save(path)
    assert Image.open(path).mode.startswith("I")  # really a 16-bit file
    a = np.asarray(load_rgb(path))[0, :, 0].astype(int)
    assert a[0] == 0 and a[-1] == 255
    assert abs(a[32] - 32 * 255 / 63) <= 1  # mid-grey stays mid-grey (clipping would make it 255)
    assert (np.diff(a) >= 0).all() and len(set(a.tolist())) > 50


@pytest.mark.parametrize(
    "orientation, red_corner",
    [(6, "top-right"), (8, "bottom-left")],  # 6: rotate 90° clockwise to view; 8: 90° anticlockwise
)
def test_exif_rotated_jpeg_is_upright(tmp_path, orientation, red_corner):
    img = quadrants(60, 40)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rotated{orientation}.jpg"
    img.save(path, exif=exif, quality=95)
    out = load_rgb(path)
    assert out.size == (40, 60)  # width and height swapped
    corners = {"top-left": (3, 3), "top-right": (36, 3), "bottom-left": (3, 56), "bottom-right": (36, 56)}
    for name, xy in corners.items():
        assert close(out.getpixel(xy), RED if name == red_corner else BLUE), name


def test_animated_gif_gives_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (16, 16), RED), Image.new("RGB", (16, 16), BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 2
    out = load_rgb(path)
    assert out.mode == "RGB" and close(out.getpixel((8, 8)), RED)


def test_bytes_and_file_objects_load(tmp_path):
    buf = io.BytesIO()
    quadrants().save(buf, "PNG")
    assert load_rgb(buf.getvalue()).size == (60, 40)
    buf.seek(0)
    assert load_rgb(buf).size == (60, 40)


def test_large_jpeg_is_drafted_but_result_is_right(tmp_path):
    path = tmp_path / "big.jpg"
    quadrants(1600, 800).save(path, quality=90)
    squared, box, original = prepare(path, 64)
    assert squared.size == (64, 64) and box == Box(0, 16, 64, 32)
    assert original.width / original.height == pytest.approx(2.0, abs=0.01)
    assert close(squared.getpixel((8, 20)), RED) and close(squared.getpixel((56, 44)), BLUE)


def test_a_sideways_jpeg_drafted_is_upright_and_knows_its_scale(tmp_path):
    """A phone photo stored sideways and decoded at a reduced scale: upright, and its scale (file pixels per
    decoded pixel, which puts the corners Tim finds back in the file's pixels) counts the same side before and
    after turning."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    quadrants(1600, 800).save(path, exif=exif, quality=90)
    picture = load_rgb(path, draft_size=224)
    assert picture.size == (400, 800)  # 800 x 400 decoded at 1/2, then turned upright
    assert picture.info[DECODE_SCALE] == 2.0
    assert close(picture.getpixel((390, 10)), RED)  # the red top-left quadrant, turned to the top right


# ---- files that must be refused with a useful message


def truncated_jpeg(path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def corrupt_jpeg(path):
    """JPEG start-of-image marker, then a damaged header. (Damaged scan data alone decodes, as grey blocks.)"""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), GREEN).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[:40] + b"\x00" * 200)


BAD_FILES = {
    "truncated.jpg": (truncated_jpeg, "re-export"),
    "corrupt.jpg": (corrupt_jpeg, "starts like a JPEG file but its header is broken; re-export"),
    "empty.jpg": (lambda p: p.write_bytes(b""), "0 bytes"),
    "notes.jpg": (lambda p: p.write_text("these are my notes, not a picture\n"), "use a JPEG, PNG or WebP"),
    "bomb.png": (lambda p: p.write_bytes(png_header(30000, 30000)), "downscale"),
    "bomb-warning.png": (lambda p: p.write_bytes(png_header(10000, 10000)), "downscale"),
}


def test_a_108_megapixel_jpeg_scan_loads_at_draft_size_but_not_in_full(tmp_path):
    """Museum scans are often 50-150 MP: a JPEG is decoded at 1/8 scale, so the pixel limit counts those pixels."""
    path = tmp_path / "scan.jpg"
    Image.new("L", (12000, 9000), 128).save(path, quality=10)  # 108 MP, 1.3 MB, written in well under a second
    picture = load_rgb(path, draft_size=224)
    assert picture.size == (1500, 1125) and picture.mode == "RGB"
    squared, box, _ = prepare(path, 224)
    assert squared.size == (224, 224) and (box.width, box.height) == (224, 168)
    with pytest.raises(ImageError, match="12000x9000 pixels.*downscale"):
        load_rgb(path)  # decoding every pixel is still refused


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_is_an_image_error_naming_the_file_and_the_fix(tmp_path, name):
    make, advice = BAD_FILES[name]
    path = tmp_path / name
    make(path)
    with pytest.raises(ImageError) as err:
        load_rgb(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert advice in message


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_rgb(tmp_path / "gone.jpg")


def test_bad_bytes_are_an_image_error_naming_the_upload():
    with pytest.raises(ImageError, match="the uploaded image: .*0 bytes"):
        load_rgb(b"")
    with pytest.raises(ImageError, match="the uploaded image: not an image"):
        load_rgb(b"plain text, not a picture")


# ---- squaring


def test_wide_image_is_letterboxed_with_bars_above_and_below():
    pad = (200, 0, 200)
    out, box = square(Image.new("RGB", (400, 100), GREEN), 224, "pad", pad)
    assert out.size == (224, 224)
    assert box == Box(left=0, top=84, width=224, height=56)
    a = np.asarray(out)
    assert (a[: box.top] == pad).all() and (a[box.top + box.height :] == pad).all()  # the bars
    content = np.flatnonzero((a != pad).any(axis=2).any(axis=1))
    assert content.min() == box.top and content.max() == box.top + box.height - 1
    assert (a[box.top : box.top + box.height] == GREEN).all()
    assert abs(box.height - 224 * 100 / 400) <= 1  # aspect kept to within a pixel
    assert abs(box.top - (224 - box.top - box.height)) <= 1  # centred


def test_tall_image_gets_bars_left_and_right():
    out, box = square(Image.new("RGB", (100, 400), GREEN), 224, "pad")
    assert box == Box(left=84, top=0, width=56, height=224)
    a = np.asarray(out)
    assert (a[:, :84] == 0).all() and (a[:, 140:] == 0).all() and (a[:, 84:140] == GREEN).all()


def test_stretch_fills_the_square():
    out, box = square(Image.new("RGB", (400, 100), GREEN), 224, "stretch", (200, 0, 200))
    assert out.size == (224, 224) and box == Box(0, 0, 224, 224)
    assert (np.asarray(out) == GREEN).all()


@pytest.mark.parametrize("size", [(1, 5000), (5000, 1)])
def test_extreme_aspect_ratios_still_give_a_square(size):
    img = Image.new("RGB", size, GREEN)
    out, box = square(img, 64, "pad")
    assert out.size == (64, 64)
    assert min(box.width, box.height) == 1 and max(box.width, box.height) == 64
    assert (np.asarray(out) == GREEN).all(axis=2).sum() == 64  # a one-pixel line of picture
    stretched, _ = square(img, 64, "stretch")
    assert stretched.size == (64, 64)


def test_unknown_resize_mode_is_refused():
    with pytest.raises(ValueError, match="crop"):
        square(Image.new("RGB", (10, 10)), 8, "crop")
