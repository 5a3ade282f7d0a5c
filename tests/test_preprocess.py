"""tim.data.preprocess: every picture decoded once into a cache that is reused, rebuilt when it must be,
and that lists bad files instead of crashing on them."""
import importlib
import io
import os
import struct
import zlib

import datasets
import numpy as np
import pytest
from PIL import Image

from tim.data import DataConfig, load_source, pixels_to_image, prepare_data, preprocess
from tim.images import load_rgb, square

pre = importlib.import_module("tim.data.preprocess")  # the module; `tim.data.preprocess` is also the function


def painting(seed: int, size=(64, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)


def bomb_png() -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)) + chunk(
        b"IEND", b""
    )


def make_folder(root, per_artist=4):
    for a, artist in enumerate(["Ann", "Bob"]):
        (root / artist).mkdir(parents=True)
        for i in range(per_artist):
            painting(10 * a + i).save(root / artist / f"{i}.jpg")
    return root


@pytest.fixture
def spy(monkeypatch):
    """Counts the images preprocessing decodes (num_proc=1 runs the map function in this process)."""
    calls = []
    real = pre._prepare_batch

    def counting(batch, indices, **kwargs):
        calls.append(len(indices))
        return real(batch, indices, **kwargs)

    monkeypatch.setattr(pre, "_prepare_batch", counting)
    return calls


def snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


# ---- what ends up in the cache


def test_every_kind_of_file_is_prepared_or_reported(tmp_path):
    root = tmp_path / "mixed"
    good = root / "Good"
    good.mkdir(parents=True)
    painting(1, (400, 100)).save(good / "wide.jpg")
    painting(2).convert("L").save(good / "gray.png")
    painting(3).convert("RGBA").save(good / "alpha.png")
    painting(4).convert("CMYK").save(good / "cmyk.jpg")
    Image.fromarray((np.asarray(painting(5).convert("L")).astype(np.uint16) * 257)).save(good / "sixteen.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    painting(6, (60, 40)).save(good / "rotated.jpg", exif=exif)
    painting(7).convert("P").save(good / "palette.gif")
    bad = root / "Bad"
    bad.mkdir()
    painting(8).save(bad / "fine.jpg")
    buf = io.BytesIO()
    painting(9).save(buf, "JPEG")
    (bad / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.jpg").write_text("not a picture")
    (bad / "bomb.png").write_bytes(bomb_png())

    images, bad_files = preprocess(load_source(str(root)), size=32, cache_dir=tmp_path / "cache", num_proc=1)
    assert sorted(os.path.basename(p) for p in images["path"]) == sorted(
        ["wide.jpg", "gray.png", "alpha.png", "cmyk.jpg", "sixteen.png", "rotated.jpg", "palette.gif", "fine.jpg"]
    )
    reasons = {os.path.basename(b.path): b.reason for b in bad_files}
    assert set(reasons) == {"truncated.jpg", "empty.jpg", "notes.jpg", "bomb.png"}
    assert all(b.path == str(bad / os.path.basename(b.path)) for b in bad_files)  # full path, as listed
    assert "0 bytes" in reasons["empty.jpg"] and "truncated" in reasons["truncated.jpg"]
    assert "not an image" in reasons["notes.jpg"] and "too many pixels" in reasons["bomb.png"]
    assert not any(r.startswith(str(root)) for r in reasons.values())  # the path is not repeated in the reason
    for row in images:
        assert pixels_to_image(row["pixels"]).size == (32, 32) and len(row["phash"]) == 16


def test_cached_pixels_are_the_squared_picture(tmp_path):
    root = tmp_path / "p"
    (root / "Ann").mkdir(parents=True)
    (root / "Bob").mkdir()
    painting(1, (400, 100)).save(root / "Ann" / "wide.png")
    painting(2).save(root / "Bob" / "square.png")
    for mode, pad in [("pad", (255, 255, 255)), ("stretch", (0, 0, 0))]:
        images, _ = preprocess(load_source(str(root)), 64, mode, pad, cache_dir=tmp_path / "c", num_proc=1)
        row = images[[os.path.basename(p) for p in images["path"]].index("wide.png")]
        cached = np.asarray(pixels_to_image(row["pixels"]))
        expected = np.asarray(square(load_rgb(root / "Ann" / "wide.png"), 64, mode, pad)[0])
        np.testing.assert_array_equal(cached, expected)
        if mode == "pad":
            assert (cached[:24] == 255).all() and (cached[40:] == 255).all()  # white bars: 64 * 100/400 = 16 rows


def test_pixels_to_image_refuses_bytes_that_are_not_a_square():
    with pytest.raises(ValueError, match="not a square RGB picture"):
        pixels_to_image(b"\x00" * 10)


# ---- reuse and rebuild


def test_cache_is_reused_when_nothing_changes(tmp_path, spy):
    root = make_folder(tmp_path / "p")
    (root / "Bob" / "broken.jpg").write_text("oops")
    cache = tmp_path / "cache"
    first, bad = preprocess(load_source(str(root)), 32, cache_dir=cache, num_proc=1)
    assert sum(spy) == 9
    before = snapshot(cache)
    assert len([p for p in cache.iterdir()]) == 1

    again, bad_again = preprocess(load_source(str(root)), 32, cache_dir=cache, num_proc=1)
    assert sum(spy) == 9  # nothing decoded the second time
    assert snapshot(cache) == before  # nothing written either
    assert bad_again == bad and [os.path.basename(b.path) for b in bad] == ["broken.jpg"]  # still reported
    assert list(again["path"]) == list(first["path"]) and list(again["pixels"]) == list(first["pixels"])


@pytest.mark.parametrize(
    "change",
    [dict(size=48), dict(mode="stretch"), dict(pad_color=(255, 255, 255))],
    ids=["size", "mode", "pad-colour"],
)
def test_cache_is_rebuilt_when_settings_change(tmp_path, spy, change):
    root = make_folder(tmp_path / "p", per_artist=2)
    cache = tmp_path / "cache"
    preprocess(load_source(str(root)), 32, cache_dir=cache, num_proc=1)
    settings = {"size": 32, "mode": "pad", "pad_color": (0, 0, 0)} | change
    images, _ = preprocess(load_source(str(root)), cache_dir=cache, num_proc=1, **settings)
    assert sum(spy) == 8
    assert len(list(cache.iterdir())) == 2
    assert pixels_to_image(images[0]["pixels"]).size == (settings["size"],) * 2


def test_cache_is_rebuilt_when_a_file_is_added_or_changed(tmp_path, spy):
    root = make_folder(tmp_path / "p", per_artist=2)
    cache = tmp_path / "cache"
    preprocess(load_source(str(root)), 32, cache_dir=cache, num_proc=1)
    painting(99).save(root / "Bob" / "new.jpg")
    images, _ = preprocess(load_source(str(root)), 32, cache_dir=cache, num_proc=1)
    assert sum(spy) == 4 + 5 and len(images) == 5
    painting(98).save(root / "Ann" / "0.jpg")  # replaced in place
    os.utime(root / "Ann" / "0.jpg", ns=(10**18, 10**18))
    preprocess(load_source(str(root)), 32, cache_dir=cache, num_proc=1)
    assert sum(spy) == 4 + 5 + 5


def test_prepare_data_leaves_the_cache_untouched_on_reuse(tmp_path, spy):
    """The filter and the split select rows by index: they never copy the pictures into the cache folder."""
    root = make_folder(tmp_path / "p", per_artist=6)
    cfg = DataConfig(source=str(root), image_size=32, min_images=3, cache_dir=str(tmp_path / "cache"), num_proc=1)
    data = prepare_data(cfg)
    before = snapshot(tmp_path / "cache")
    assert sum(len(data.splits[s]) for s in data.splits) == 12
    again = prepare_data(cfg)
    assert sum(spy) == 12
    assert snapshot(tmp_path / "cache") == before
    assert list(again.splits["test"]["path"]) == list(data.splits["test"]["path"])
    assert data.cache == str(next((tmp_path / "cache").iterdir()))


def test_hub_source_cache_is_reused(tmp_path, spy):
    features = datasets.Features({"image": datasets.Image(), "artist": datasets.ClassLabel(names=["a", "b"])})

    def png(seed):
        buf = io.BytesIO()
        painting(seed).save(buf, "PNG")
        return buf.getvalue()

    datasets.Dataset.from_dict(
        {"image": [{"bytes": png(i), "path": None} for i in range(4)], "artist": [0, 1, 0, 1]}, features=features
    ).to_parquet(str(tmp_path / "d.parquet"))
    first, _ = preprocess(load_source(str(tmp_path / "d.parquet")), 32, cache_dir=tmp_path / "c", num_proc=1)
    again, _ = preprocess(load_source(str(tmp_path / "d.parquet")), 32, cache_dir=tmp_path / "c", num_proc=1)
    assert sum(spy) == 4 and len(again) == 4


# ---- processes


@pytest.mark.parametrize(
    "num_proc, rows, expected", [(None, 10, 1), (8, 10, 1), (8, 200, 3), (2, 1000, 2), (1, 1000, 1)]
)
def test_small_datasets_use_fewer_processes(num_proc, rows, expected):
    assert pre._processes(num_proc, rows) == expected


def test_parallel_preprocessing_matches_serial_and_names_bad_rows(tmp_path):
    """130 in-memory images on 2 processes: same rows, same order, bad rows named by their global index."""
    def png(seed):
        buf = io.BytesIO()
        painting(seed, (16, 16)).save(buf, "PNG")
        return buf.getvalue()

    images = [{"bytes": png(i), "path": None} for i in range(130)]
    images[3]["bytes"] = b"not an image"
    images[100]["bytes"] = b"\x89PNG\r\n\x1a\n broken"
    ds = datasets.Dataset.from_dict(
        {"image": images, "artist": [i % 2 for i in range(130)]},
        features=datasets.Features({"image": datasets.Image(decode=False),
                                    "artist": datasets.ClassLabel(names=["a", "b"])}),
    )
    ds.info.description = "tim source test:parallel"
    serial, bad_serial = preprocess(ds, 16, cache_dir=tmp_path / "serial", num_proc=1)
    parallel, bad_parallel = preprocess(ds, 16, cache_dir=tmp_path / "parallel", num_proc=2)
    assert [b.path for b in bad_parallel] == ["<row 3>", "<row 100>"] and bad_parallel == bad_serial
    assert "PNG file but its header is broken" in bad_parallel[1].reason
    assert list(parallel["pixels"]) == list(serial["pixels"]) and len(parallel) == 128
    assert list(parallel["artist"]) == [i % 2 for i in range(130) if i not in (3, 100)]
    assert not any(".tmp" in p.name for p in (tmp_path / "parallel").iterdir())  # no half-built leftovers


def test_a_source_with_no_readable_image_still_reports_its_bad_files(tmp_path):
    root = tmp_path / "p"
    (root / "Ann").mkdir(parents=True)
    (root / "Ann" / "a.jpg").write_text("text")
    (root / "Ann" / "b.jpg").write_bytes(b"")
    for _ in range(2):  # built, then reused
        images, bad = preprocess(load_source(str(root)), 32, cache_dir=tmp_path / "c", num_proc=1)
        assert len(images) == 0 and sorted(os.path.basename(b.path) for b in bad) == ["a.jpg", "b.jpg"]
