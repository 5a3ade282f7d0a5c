"""`tim data inspect` and `tim data prepare`, as a user runs them."""
import os

import numpy as np
import pytest
from PIL import Image

from tim.cli import main


def painting(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((64, 48), Image.Resampling.BICUBIC)


@pytest.fixture
def source(tmp_path):
    """Ann 6 works (+1 re-scan), Bob 5, Cy 2; two bad files."""
    root = tmp_path / "paintings"
    for a, (artist, n) in enumerate({"Ann": 6, "Bob": 5, "Cy": 2}.items()):
        (root / artist).mkdir(parents=True)
        for i in range(n):
            painting(10 * a + i).save(root / artist / f"{artist.lower()}_{i}.jpg", quality=90)
    rescan = np.clip(np.asarray(painting(0)).astype(int) + 10, 0, 255).astype(np.uint8)
    Image.fromarray(rescan).save(root / "Ann" / "ann_0_rescan.png")
    (root / "Bob" / "empty.jpg").write_bytes(b"")
    (root / "Cy" / "readme.jpg").write_text("this is not a picture")
    return root


def run(capsys, *args):
    code = main(["data", *args, "--image-size", "32", "--num-proc", "1"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_inspect_reports_counts_filter_duplicates_and_bad_files(source, tmp_path, capsys):
    code, out, err = run(capsys, "inspect", str(source), "--min-images", "4", "--cache-dir", str(tmp_path / "c"))
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    lines = {row[0]: row[1:] for row in rows if row[:1] in (["Ann"], ["Bob"], ["Cy"])}
    assert lines == {"Ann": ["7", "7", "keep"], "Bob": ["6", "5", "keep"], "Cy": ["3", "2", "drop"]}
    assert "Kept 2 artists, 12 images; dropped 1 artists (2 images)." in out
    assert "Near-duplicates: 1 groups (2 images)" in out
    assert f"{source / 'Ann' / 'ann_0.jpg'}  =  {source / 'Ann' / 'ann_0_rescan.png'}" in out
    assert f"{source / 'Bob' / 'empty.jpg'}: the file is empty (0 bytes); re-download or remove it." in out
    assert f"{source / 'Cy' / 'readme.jpg'}: not an image file" in out
    assert "2 bad file(s)" in out
    assert "Split: train 8, validation 2, test 2" in out


def test_inspect_fails_clearly_when_fewer_than_two_artists_remain(source, tmp_path, capsys):
    code, out, err = run(capsys, "inspect", str(source), "--min-images", "6", "--cache-dir", str(tmp_path / "c"))
    assert code != 0
    assert "error: only 1 of 3 artists have at least 6 usable images (largest: Ann 7, Bob 5, Cy 2)" in err
    assert "Traceback" not in err
    assert "Ann" in out and "empty.jpg" in out  # the table and the bad files still show what there is


def test_inspect_of_a_missing_folder_is_a_message_not_a_traceback(tmp_path, capsys):
    code, _, err = run(capsys, "inspect", str(tmp_path / "no-such-folder"))
    assert code != 0 and "no such folder" in err


def test_prepare_builds_the_cache_that_inspect_then_reuses(source, tmp_path, capsys):
    cache = tmp_path / "c"
    code, out, _ = run(capsys, "prepare", str(source), "--min-images", "4", "--cache-dir", str(cache))
    assert code == 0
    folders = list(cache.iterdir())
    assert len(folders) == 1 and (folders[0] / "done").exists()
    assert f"Prepared 12 images of 2 artists (2 bad files skipped) in {folders[0]}" in out
    built = os.stat(folders[0] / "done").st_mtime_ns
    code, out, _ = run(capsys, "inspect", str(source), "--min-images", "4", "--cache-dir", str(cache))
    assert code == 0 and f"cache {folders[0]}" in out
    assert os.stat(folders[0] / "done").st_mtime_ns == built and list(cache.iterdir()) == folders


def test_prepare_with_other_settings_builds_another_cache(source, tmp_path, capsys):
    cache = tmp_path / "c"
    run(capsys, "prepare", str(source), "--min-images", "4", "--cache-dir", str(cache))
    code, _, _ = run(capsys, "prepare", str(source), "--min-images", "4", "--cache-dir", str(cache),
                     "--resize-mode", "stretch")
    assert code == 0 and len(list(cache.iterdir())) == 2


def test_prepare_error_is_a_message(source, tmp_path, capsys):
    code, _, err = run(capsys, "prepare", str(source), "--artists", "Picasso", "Ann",
                       "--cache-dir", str(tmp_path / "c"))
    assert code != 0 and "artists not in the data: ['Picasso']" in err
