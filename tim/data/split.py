"""Which artists to keep, and a leak-free, stratified, reproducible split.

Near-duplicates (one work scanned twice, or filed under two titles) are found
by perceptual hash and always land in the same split: otherwise the test split
measures memory, not recognition.
"""
from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import datasets
import numpy as np

from tim.errors import UserError

SPLITS = ("train", "validation", "test")


class DataError(UserError):
    """The data cannot make a usable training set; the message names the numbers."""


@dataclass
class FilterReport:
    kept: dict[str, int]
    dropped: dict[str, int]


def filter_artists(
    ds: datasets.Dataset, min_images: int = 99, artists: list[str] | None = None
) -> tuple[datasets.Dataset, FilterReport]:
    """Keep artists with at least `min_images` images (and in `artists`, if given); relabel 0..K-1.

    An artist named in `artists` that cannot be kept (unknown, no usable images,
    or fewer than `min_images`) is an error rather than a silent drop: the user
    asked for that artist by name.
    """
    names = ds.features["artist"].names
    counts = Counter(np.asarray(ds["artist"]).tolist())
    per_artist = {n: counts.get(i, 0) for i, n in enumerate(names)}
    if artists:
        by_spelling = {unicodedata.normalize("NFC", n): n for n in names}
        requested = [by_spelling.get(unicodedata.normalize("NFC", a), a) for a in artists]
        unknown = [a for a in requested if a not in per_artist]
        if unknown:
            raise DataError(f"artists not in the data: {unknown}; known artists are {sorted(per_artist)}")
        too_few = {a: per_artist[a] for a in requested if per_artist[a] < max(min_images, 1)}
        if too_few:
            raise DataError(
                f"requested artists with fewer than {max(min_images, 1)} usable images: {too_few}; "
                "lower --min-images or leave them out of --artists."
            )
        allowed = set(requested)
    else:
        allowed = set(names)
    kept = {n: c for n, c in per_artist.items() if n in allowed and c >= min_images and c > 0}
    dropped = {n: c for n, c in per_artist.items() if n not in kept}
    if len(kept) < 2:
        candidates = sorted(((n, c) for n, c in per_artist.items() if n in allowed), key=lambda kv: -kv[1])
        raise DataError(
            f"only {len(kept)} of {len(allowed)} artists have at least {min_images} usable images "
            f"(largest: {', '.join(f'{n} {c}' for n, c in candidates[:3])}); "
            "a classifier needs 2 or more: lower --min-images or add data."
        )
    kept_names = sorted(kept)
    old_to_new = np.full(len(names), -1)
    for new, n in enumerate(kept_names):
        old_to_new[names.index(n)] = new
    labels = old_to_new[np.asarray(ds["artist"])]
    # replace the column, then select: nothing is rewritten on disk (ClassLabel allows -1 for dropped rows).
    # add_column on a dataset that already has an index mapping would copy every picture, hence the order.
    ds = ds.remove_columns("artist").add_column(
        "artist", labels.tolist(), feature=datasets.ClassLabel(names=kept_names)
    )
    ds = ds.select(np.flatnonzero(labels >= 0))
    return ds, FilterReport(kept=kept, dropped=dropped)


def duplicate_groups(hashes: list[str], max_distance: int = 8) -> np.ndarray:
    """Group ids: images whose 64-bit perceptual hashes differ in <= max_distance bits share one.

    Groups are transitive (A~B and B~C puts A, B, C together) and each group's id
    is its smallest row index. Hashes are compared block by block, about 32 MB of
    distances at a time, so WikiArt-sized sets (80k images) fit in memory.
    """
    n = len(hashes)
    bits = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    parent = np.arange(n)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    block = max(1, (32 << 20) // max(n, 1) // 8)
    for start in range(0, n, block):
        distances = np.bitwise_count(bits[start : start + block, None] ^ bits[None, :])
        for i, j in np.argwhere(distances <= max_distance):
            i += start
            if i < j:
                ri, rj = root(i), root(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    return np.array([root(i) for i in range(n)], dtype=np.int64)


@dataclass
class SplitReport:
    counts: dict[str, dict[str, int]]  # split -> artist -> images
    duplicate_groups: int  # groups of 2+ images kept together
    duplicate_images: int  # images in those groups
    sizes: dict[str, int] = field(default_factory=dict)
    duplicates: list[list[str]] = field(default_factory=list)  # the paths of each group, for `tim data inspect`


def _targets(n: int, fractions) -> dict[int, int]:
    """Images per split for an artist with n images: every used split gets one or more, the largest the rest."""
    wanted = [s for s in range(3) if fractions[s] > 0]
    largest = max(wanted, key=lambda s: fractions[s])
    targets = {s: max(1, round(n * fractions[s])) for s in wanted if s != largest}
    targets[largest] = n - sum(targets.values())
    return targets


def split_dataset(
    ds: datasets.Dataset,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 42,
    max_distance: int = 8,
) -> tuple[datasets.DatasetDict, SplitReport]:
    """Seeded, stratified train/validation/test split that keeps near-duplicates together.

    Per artist, each group of near-duplicates (a single image is a group of one)
    goes, largest groups first and otherwise in seeded random order, to the split
    furthest below its target share, so single images hit the targets exactly.
    Deterministic: only the row order, the hashes and the seed decide it, so every
    machine and every process gets the same split.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise DataError(f"split fractions {tuple(fractions)} must be three numbers >= 0 that sum to 1")
    labels = np.asarray(ds["artist"])
    groups = duplicate_groups(list(ds["phash"]), max_distance) if max_distance >= 0 else np.arange(len(labels))
    names = ds.features["artist"].names
    rng = np.random.default_rng(seed)
    assignment = np.full(len(labels), -1, dtype=np.int64)
    wanted = [s for s in range(3) if fractions[s] > 0]
    group_ids, group_of_row = np.unique(groups, return_inverse=True)
    members = np.split(np.argsort(group_of_row, kind="stable"), np.cumsum(np.bincount(group_of_row))[:-1])
    rows_of = dict(zip(group_ids.tolist(), members))
    for artist in range(len(names)):
        rows = np.flatnonzero(labels == artist)
        # a group belongs to the artist of its first image (cross-artist duplicates are rare)
        artist_groups = np.unique(groups[rows][labels[groups[rows]] == artist])
        if len(artist_groups) < len(wanted):
            raise DataError(
                f"artist {names[artist]!r} has {len(rows)} images ({len(artist_groups)} distinct works once "
                f"near-duplicates are grouped): too few to stratify into {len(wanted)} splits, which needs at "
                f"least {len(wanted)}; raise --min-images or drop the artist."
            )
        targets = _targets(len(rows), fractions)
        shuffled = rng.permutation(artist_groups).tolist()
        ordered = sorted(shuffled, key=lambda g: -len(rows_of[g]))  # stable: ties keep the seeded order
        filled = {s: 0 for s in wanted}
        for done, g in enumerate(ordered):
            empty = [s for s in wanted if filled[s] == 0]
            # every split needs one group: once only that many groups remain, they go to the empty splits
            candidates = empty if len(ordered) - done <= len(empty) else wanted
            best = max(candidates, key=lambda s: targets[s] - filled[s])
            assignment[rows_of[g]] = best
            filled[best] += len(rows_of[g])
    splits = datasets.DatasetDict({name: ds.select(np.flatnonzero(assignment == s)) for s, name in enumerate(SPLITS)})
    paths = list(ds["path"]) if "path" in ds.column_names else [f"<row {i}>" for i in range(len(labels))]
    multi = [rows for rows in rows_of.values() if len(rows) > 1]
    report = SplitReport(
        counts={
            name: {names[a]: int(np.sum((assignment == s) & (labels == a))) for a in range(len(names))}
            for s, name in enumerate(SPLITS)
        },
        duplicate_groups=len(multi),
        duplicate_images=sum(len(rows) for rows in multi),
        sizes={name: len(splits[name]) for name in SPLITS},
        duplicates=[[paths[int(i)] for i in rows] for rows in multi],
    )
    return splits, report
