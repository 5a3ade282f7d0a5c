"""Which artists to keep, and a leak-free, stratified, reproducible split.

Near-duplicates (one work scanned twice, or filed under two titles) are found
by perceptual hash and always land in the same split: otherwise the test split
measures memory, not recognition.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import datasets
import numpy as np

SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """The data cannot make a usable training set; the message names the numbers."""


@dataclass
class FilterReport:
    kept: dict[str, int]
    dropped: dict[str, int]


def filter_artists(
    ds: datasets.Dataset, min_images: int = 99, artists: list[str] | None = None
) -> tuple[datasets.Dataset, FilterReport]:
    """Keep artists with at least `min_images` images (and in `artists`, if given); relabel 0..K-1."""
    names = ds.features["artist"].names
    counts = Counter(ds["artist"])
    per_artist = {n: counts.get(i, 0) for i, n in enumerate(names)}
    if artists:
        unknown = [a for a in artists if a not in per_artist]
        if unknown:
            raise DataError(f"artists not in the data: {unknown}; known artists are {sorted(per_artist)}")
        empty = [a for a in artists if per_artist[a] == 0]
        if empty:
            raise DataError(f"artists with no usable images: {empty}")
    allowed = set(artists) if artists else set(names)
    kept = {n: c for n, c in per_artist.items() if n in allowed and c >= min_images and c > 0}
    dropped = {n: c for n, c in per_artist.items() if n not in kept}
    if len(kept) < 2:
        raise DataError(
            f"only {len(kept)} artist(s) have at least {min_images} images "
            f"(largest: {sorted(per_artist.items(), key=lambda kv: -kv[1])[:3]}); "
            "lower --min-images or add data: a classifier needs 2 or more artists."
        )
    kept_names = sorted(kept)
    old_to_new = np.full(len(names), -1)
    for new, n in enumerate(kept_names):
        old_to_new[names.index(n)] = new
    labels = old_to_new[np.asarray(ds["artist"])]
    # replace the column, then select: nothing is rewritten on disk (ClassLabel allows -1 for dropped rows)
    ds = ds.remove_columns("artist").add_column(
        "artist", labels.tolist(), feature=datasets.ClassLabel(names=kept_names)
    )
    ds = ds.select(np.flatnonzero(labels >= 0))
    return ds, FilterReport(kept=kept, dropped=dropped)


def duplicate_groups(hashes: list[str], max_distance: int = 8) -> np.ndarray:
    """Group ids: images whose 64-bit perceptual hashes differ in <= max_distance bits share one."""
    n = len(hashes)
    bits = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    parent = np.arange(n)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, n, 1024):
        block = bits[start : start + 1024, None] ^ bits[None, :]
        close = np.argwhere(np.bitwise_count(block) <= max_distance)
        for i, j in close:
            i += start
            if i < j:
                ri, rj = root(i), root(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    return np.array([root(i) for i in range(n)])


@dataclass
class SplitReport:
    counts: dict[str, dict[str, int]]  # split -> artist -> images
    duplicate_groups: int  # groups of 2+ images kept together
    duplicate_images: int  # images in those groups
    sizes: dict[str, int] = field(default_factory=dict)


def split_dataset(
    ds: datasets.Dataset,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 42,
    max_distance: int = 8,
) -> tuple[datasets.DatasetDict, SplitReport]:
    """Seeded, stratified train/validation/test split that keeps near-duplicates together.

    Deterministic: only the row order, the hashes and the seed decide it, so every
    machine and every process gets the same split.
    """
    if abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise DataError(f"split fractions {fractions} must be >= 0 and sum to 1")
    labels = np.asarray(ds["artist"])
    groups = duplicate_groups(list(ds["phash"]), max_distance) if max_distance >= 0 else np.arange(len(labels))
    names = ds.features["artist"].names
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    wanted = [s for s, f in zip(range(3), fractions) if f > 0]
    group_ids, group_of_row = np.unique(groups, return_inverse=True)
    members = np.split(np.argsort(group_of_row, kind="stable"), np.cumsum(np.bincount(group_of_row))[:-1])
    rows_of = dict(zip(group_ids.tolist(), members))
    for artist in range(len(names)):
        rows = np.flatnonzero(labels == artist)
        # a group belongs to the artist of its first image (cross-artist duplicates are rare)
        artist_groups = np.unique(groups[rows][labels[groups[rows]] == artist])
        if len(artist_groups) < len(wanted):
            raise DataError(
                f"artist {names[artist]!r} has {len(rows)} images in {len(artist_groups)} distinct works: too few "
                f"to stratify into {len(wanted)} splits; raise --min-images or drop the artist."
            )
        artist_groups = rng.permutation(artist_groups)
        targets = [max(1, round(len(rows) * f)) if f > 0 else 0 for f in fractions]
        # fill test, then validation, then train, a whole group at a time
        filled = [0, 0, 0]
        for g in artist_groups.tolist():
            for s in (2, 1, 0):
                if s == 0 or filled[s] < targets[s]:
                    assignment[rows_of[g]] = s
                    filled[s] += len(rows_of[g])
                    break
        if fractions[0] > 0 and filled[0] == 0:  # every group went to test/validation
            raise DataError(f"artist {names[artist]!r}: no images left for training ({len(rows)} images)")
    splits = datasets.DatasetDict({name: ds.select(np.flatnonzero(assignment == s)) for s, name in enumerate(SPLITS)})
    group_sizes = Counter(groups)
    multi = [c for c in group_sizes.values() if c > 1]
    report = SplitReport(
        counts={
            name: {names[a]: int(np.sum((assignment == s) & (labels == a))) for a in range(len(names))}
            for s, name in enumerate(SPLITS)
        },
        duplicate_groups=len(multi),
        duplicate_images=int(sum(multi)),
        sizes={name: len(splits[name]) for name in SPLITS},
    )
    return splits, report
