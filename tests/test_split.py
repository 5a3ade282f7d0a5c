"""tim.data.split: the artist filter, and a split that is reproducible, stratified and leak-free."""
import json
import os
import subprocess
import sys

import datasets
import numpy as np
import pytest
from PIL import Image

from tim.data import DataConfig, DataError, filter_artists, load_source, prepare_data, preprocess, split_dataset
from tim.data.split import duplicate_groups


def prepared(counts: dict[str, int], seed: int = 0) -> datasets.Dataset:
    """A stand-in for preprocess output: artist, path and far-apart random perceptual hashes."""
    rng = np.random.default_rng(seed)
    names = sorted(counts)
    labels = [names.index(a) for a in counts for _ in range(counts[a])]
    return datasets.Dataset.from_dict(
        {
            "artist": labels,
            "phash": [f"{h:016x}" for h in rng.integers(0, 2**63, len(labels), dtype=np.int64)],
            "path": [f"{a}/{i}.jpg" for a in counts for i in range(counts[a])],
        },
        features=datasets.Features(
            {"artist": datasets.ClassLabel(names=names), "phash": datasets.Value("string"),
             "path": datasets.Value("string")}
        ),
    )


def by_artist(ds) -> dict[str, int]:
    names = ds.features["artist"].names
    return {n: int((np.asarray(ds["artist"]) == i).sum()) for i, n in enumerate(names)}


# ---- filter


def test_filter_keeps_artists_with_enough_images_and_relabels():
    ds = prepared({"Ann": 5, "Bob": 2, "Cy": 7, "Dee": 4})
    kept, report = filter_artists(ds, min_images=4)
    assert kept.features["artist"].names == ["Ann", "Cy", "Dee"]
    assert report.kept == {"Ann": 5, "Cy": 7, "Dee": 4} and report.dropped == {"Bob": 2}
    assert len(kept) == 16
    # each image keeps its artist through the relabelling
    names = kept.features["artist"].names
    assert all(path.split("/")[0] == names[label] for path, label in zip(kept["path"], kept["artist"]))


def test_filter_allow_list():
    ds = prepared({"Ann": 5, "Bob": 6, "Cy": 7})
    kept, report = filter_artists(ds, min_images=1, artists=["Cy", "Ann"])
    assert kept.features["artist"].names == ["Ann", "Cy"] and len(kept) == 12
    assert report.dropped == {"Bob": 6}


def test_filter_unknown_artist_is_an_error_listing_the_known_ones():
    with pytest.raises(DataError, match=r"not in the data: \['Picasso'\].*'Ann', 'Bob'"):
        filter_artists(prepared({"Ann": 5, "Bob": 6}), 1, artists=["Ann", "Picasso"])


def test_filter_requested_artist_below_the_minimum_is_an_error_with_numbers():
    with pytest.raises(DataError, match=r"fewer than 5 usable images: \{'Bob': 3\}"):
        filter_artists(prepared({"Ann": 5, "Bob": 3, "Cy": 9}), 5, artists=["Ann", "Bob"])


def test_filter_fewer_than_two_artists_names_the_numbers():
    with pytest.raises(DataError) as err:
        filter_artists(prepared({"Ann": 120, "Bob": 40, "Cy": 12}), min_images=99)
    message = str(err.value)
    assert "only 1 of 3 artists have at least 99" in message
    assert "Ann 120, Bob 40, Cy 12" in message and "--min-images" in message


# ---- split


def test_split_is_stratified_and_complete():
    counts = {"Ann": 10, "Bob": 23, "Cy": 50, "Dee": 7, "Eve": 101}
    ds = prepared(counts)
    splits, report = split_dataset(ds, (0.7, 0.1, 0.2), seed=3)
    paths = [p for name in ("train", "validation", "test") for p in splits[name]["path"]]
    assert sorted(paths) == sorted(ds["path"])  # every image in exactly one split
    for name, fraction in zip(("train", "validation", "test"), (0.7, 0.1, 0.2)):
        got = by_artist(splits[name])
        assert got == report.counts[name]
        for artist, n in counts.items():
            assert abs(got[artist] - n * fraction) <= 1, (name, artist, got[artist], n * fraction)
    assert report.sizes == {name: len(splits[name]) for name in splits}


def test_split_same_seed_same_split_other_seed_other_split():
    ds = prepared({"Ann": 30, "Bob": 30, "Cy": 30})
    test_paths = lambda seed: split_dataset(ds, seed=seed)[0]["test"]["path"]  # noqa: E731
    assert test_paths(7) == test_paths(7)
    assert set(test_paths(7)) != set(test_paths(8))


def test_split_too_small_to_stratify_names_artist_and_numbers():
    ds = prepared({"Ann": 10, "Bob": 2})
    with pytest.raises(DataError, match=r"'Bob' has 2 images .*into 3 splits.*at least 3"):
        split_dataset(ds, (0.7, 0.1, 0.2))
    two_way, _ = split_dataset(ds, (0.8, 0.0, 0.2))  # two splits need only two images
    assert len(two_way["validation"]) == 0 and by_artist(two_way["test"])["Bob"] == 1


@pytest.mark.parametrize("fractions", [(0.7, 0.2, 0.2), (1.2, -0.1, -0.1), (0.5, 0.5)])
def test_split_fractions_must_make_sense(fractions):
    with pytest.raises(DataError, match="fractions"):
        split_dataset(prepared({"Ann": 10, "Bob": 10}), fractions)


def test_duplicate_groups_are_transitive_and_respect_the_distance():
    base = 0x0F0F_0F0F_0F0F_0F0F
    hashes = [base, base ^ 0b1111, base ^ 0b1_1111_1111, base ^ (2**40 - 1), 0xFFFF_0000_FFFF_0000]
    groups = duplicate_groups([f"{h:016x}" for h in hashes], max_distance=8)
    # 0~1 (4 bits), 1~2 (5 bits) but 0-2 are 9 apart: one group through 1; 3 and 4 are far from all
    assert groups.tolist() == [0, 0, 0, 3, 4]
    assert duplicate_groups([f"{h:016x}" for h in hashes], max_distance=4).tolist() == [0, 0, 2, 3, 4]


def test_large_duplicate_groups_still_leave_every_split_an_image():
    ds = prepared({"Ann": 7, "Bob": 10})
    hashes = list(ds["phash"])
    hashes[1:3] = [hashes[0]] * 2  # Ann: groups of 3, 3 and 1 images
    hashes[4:6] = [hashes[3]] * 2
    ds = ds.remove_columns("phash").add_column("phash", hashes)
    for seed in range(5):
        splits, report = split_dataset(ds, seed=seed)
        assert all(by_artist(splits[name])["Ann"] >= 1 for name in splits)
        assert report.duplicate_groups == 2 and report.duplicate_images == 6


# ---- near-duplicates through the real pipeline


def painting(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((64, 64), Image.Resampling.BICUBIC)


def altered(img: Image.Image, how: str) -> Image.Image:
    """The same work, scanned again: brighter, or smaller (and re-encoded, as every copy here is a JPEG)."""
    if how == "brighter":
        return Image.fromarray(np.clip(np.asarray(img).astype(int) + 12, 0, 255).astype(np.uint8))
    return img.resize((52, 52), Image.Resampling.BILINEAR)


def make_folder(root, per_artist=8, duplicates=True):
    """3 artists; Ann has two works that also appear altered under another title."""
    for a, artist in enumerate(["Ann", "Bob", "Cy"]):
        (root / artist).mkdir(parents=True)
        for i in range(per_artist):
            painting(100 * a + i).save(root / artist / f"work_{i}.jpg", quality=90)
    if duplicates:
        altered(painting(0), "brighter").save(root / "Ann" / "rescan_of_work_0.png")
        altered(painting(1), "smaller").save(root / "Ann" / "zz_other_title.jpg", quality=70)
    return root


def test_near_duplicates_always_land_in_the_same_split(tmp_path):
    root = make_folder(tmp_path / "paintings")
    images, bad = preprocess(load_source(str(root)), size=32, cache_dir=tmp_path / "cache", num_proc=1)
    assert bad == []
    pairs = [("work_0.jpg", "rescan_of_work_0.png"), ("work_1.jpg", "zz_other_title.jpg")]
    seen_apart_without_grouping = False
    for seed in range(8):
        splits, report = split_dataset(images, seed=seed)
        where = {os.path.basename(p): name for name in splits for p in splits[name]["path"] if "/Ann/" in p}
        for a, b in pairs:
            assert where[a] == where[b], (seed, a, b, where)
        assert (report.duplicate_groups, report.duplicate_images) == (2, 4)
        assert sorted(map(sorted, report.duplicates)) == sorted(
            sorted(str(root / "Ann" / f) for f in pair) for pair in pairs
        )
        ungrouped, off = split_dataset(images, seed=seed, max_distance=-1)
        assert off.duplicate_groups == 0
        where = {os.path.basename(p): name for name in ungrouped for p in ungrouped[name]["path"] if "/Ann/" in p}
        seen_apart_without_grouping |= any(where[a] != where[b] for a, b in pairs)
    assert seen_apart_without_grouping  # the grouping is what keeps them together


SPLIT_SCRIPT = """
import json, sys
from tim.data import DataConfig, prepare_data
data = prepare_data(DataConfig(source=sys.argv[1], cache_dir=sys.argv[2], image_size=32, min_images=5,
                               seed=int(sys.argv[3]), num_proc=1))
print(json.dumps({name: list(data.splits[name]["path"]) for name in data.splits}))
"""


def test_same_seed_same_split_in_another_process(tmp_path):
    """Another process, its own cache (so every image is decoded and hashed again), another hash seed."""
    root = make_folder(tmp_path / "paintings")
    mine = prepare_data(DataConfig(source=str(root), cache_dir=str(tmp_path / "c1"), image_size=32, min_images=5,
                                   seed=11, num_proc=1))
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", SPLIT_SCRIPT, str(root), str(tmp_path / "c2"), "11"],
        capture_output=True, text=True, env=env, check=True,
    )
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    assert {name: list(mine.splits[name]["path"]) for name in mine.splits} == theirs
    assert len(theirs["test"]) >= 3
