"""tim.data.sources: each source becomes Dataset(image, artist) with the right artists and images."""
import hashlib
import io
import os
import unicodedata

import datasets
import numpy as np
import pytest
from PIL import Image

from tim.data import DataError, detect_source, load_source
from tim.data.sources import fingerprint, fix_artist_name

# Kaggle's mis-encoded folder name, as the bytes on disk: UTF-8 of "Albrecht_Du╠êrer" (a decomposed "ü" whose
# UTF-8 bytes were read as code page 437)
DURER_MISENCODED = b"Albrecht_Du\xe2\x95\xa0\xc3\xaarer"
DURER = unicodedata.normalize("NFC", "Albrecht_Dürer")


def painting(seed: int, size=(48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)


def artist_counts(ds: datasets.Dataset) -> dict[str, int]:
    names = ds.features["artist"].names
    labels = np.asarray(ds["artist"])
    return {n: int((labels == i).sum()) for i, n in enumerate(names)}


# ---- image folder


def test_imagefolder_one_artist_per_subfolder(tmp_path):
    root = tmp_path / "paintings"
    for artist, n in {"Rembrandt": 3, "Paul_Klee": 2, "Joan_Miro": 4}.items():
        (root / artist).mkdir(parents=True)
        for i in range(n):
            painting(i).save(root / artist / f"work_{i}.jpg")
    (root / "Paul_Klee" / "nested").mkdir()
    painting(9).save(root / "Paul_Klee" / "nested" / "deep.png")
    (root / "README.md").write_text("not a painting")  # files at the top level are not artists
    (root / "Joan_Miro" / "notes.txt").write_text("not an image extension")
    (root / "Joan_Miro" / "._work_0.jpg").write_bytes(b"\x00\x05\x16\x07macOS resource fork")
    (root / "Joan_Miro" / ".DS_Store").write_bytes(b"\x00")
    (root / ".hidden_artist").mkdir()
    painting(1).save(root / ".hidden_artist" / "x.jpg")
    (root / "Rembrandt" / "broken.jpg").write_text("not a jpeg")  # listed here, reported by preprocessing

    assert detect_source(str(root)) == "imagefolder"
    ds = load_source(str(root))
    assert ds.features["artist"].names == ["Joan_Miro", "Paul_Klee", "Rembrandt"]
    assert artist_counts(ds) == {"Joan_Miro": 4, "Paul_Klee": 3, "Rembrandt": 4}
    assert isinstance(ds.features["image"], datasets.Image) and not ds.features["image"].decode
    paths = [row["path"] for row in ds["image"]]
    assert str(root / "Rembrandt" / "broken.jpg") in paths
    assert not any("/." in p for p in paths)


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "Rembrandt").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_source(str(tmp_path))


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_source(str(tmp_path / "no" / "such" / "folder"))


def test_detection():
    assert detect_source("huggan/wikiart") == "hub"
    assert detect_source("hf:huggan/wikiart") == "hub"


# ---- Kaggle "Best Artworks of All Time"


def make_best_artworks(root, proper_durer: str | None = DURER, shared_copy: bool = True):
    """The Kaggle layout: images/images/<Artist_Name>/<Artist_Name>_<n>.jpg, artists.csv, a resized/ folder."""
    images = root / "images" / "images"
    for a, (artist, n) in enumerate({"Vincent_van_Gogh": 3, "Frida_Kahlo": 2}.items()):
        (images / artist).mkdir(parents=True)
        for i in range(1, n + 1):
            painting(100 * a + i).save(images / artist / f"{artist}_{i}.jpg")
    bad = os.path.join(os.fsencode(images), DURER_MISENCODED)
    os.mkdir(bad)
    for i in range(1, 4):
        painting(500 + i).save(os.path.join(bad, DURER_MISENCODED + f"_{i}.jpg".encode()).decode())
    if proper_durer:
        os.mkdir(images / proper_durer)
        painting(600).save(images / proper_durer / f"{proper_durer}_4.jpg")
        if shared_copy:  # the very same file in both folders must count once
            copy = os.path.join(bad, DURER_MISENCODED + b"_1.jpg")
            with open(copy, "rb") as src:
                (images / proper_durer / f"{proper_durer}_1.jpg").write_bytes(src.read())
    (root / "resized" / "resized").mkdir(parents=True)
    painting(1).save(root / "resized" / "resized" / "Frida_Kahlo_1.jpg")
    (root / "artists.csv").write_text(
        "id,name,years,genre,nationality,bio,wikipedia,paintings\n"
        "0,Vincent van Gogh,1853 - 1890,Post-Impressionism,Dutch,...,http://en.wikipedia.org/wiki/Vincent_van_Gogh,3\n"
    )
    return root


@pytest.mark.parametrize(
    "proper_durer", [DURER, unicodedata.normalize("NFD", DURER)], ids=["nfc-folder", "nfd-folder"]
)
def test_best_artworks_merges_the_misencoded_durer_folder(tmp_path, proper_durer):
    root = make_best_artworks(tmp_path / "best-artworks", proper_durer)
    assert detect_source(str(root)) == "best-artworks"
    ds = load_source(str(root))
    names = ds.features["artist"].names
    assert names == [DURER, "Frida_Kahlo", "Vincent_van_Gogh"]  # Dürer once, spelled properly
    # 3 files in the mis-encoded folder, 2 in the proper one of which 1 is a byte-identical copy
    assert artist_counts(ds) == {DURER: 4, "Frida_Kahlo": 2, "Vincent_van_Gogh": 3}
    contents = [hashlib.sha256(open(row["path"], "rb").read()).hexdigest() for row in ds["image"]]
    assert len(set(contents)) == len(contents)
    assert not any("resized" in row["path"] for row in ds["image"])


def test_best_artworks_with_only_the_misencoded_folder(tmp_path):
    root = make_best_artworks(tmp_path / "kaggle", proper_durer=None)
    (root / "artists.csv").unlink()  # the csv is optional
    assert detect_source(str(root)) == "best-artworks"
    assert artist_counts(load_source(str(root)))[DURER] == 3


def test_fix_artist_name_leaves_correct_names_alone():
    assert fix_artist_name(os.fsdecode(DURER_MISENCODED)) == DURER
    for name in ["Joan_Miró", "Pierre-Auguste_Renoir", "Café_Ærø", "René_Magritte", "Rembrandt"]:
        assert fix_artist_name(name) == unicodedata.normalize("NFC", name)


# ---- Hub schema, as local parquet


def png_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    painting(seed).save(buf, "PNG")
    return buf.getvalue()


def write_wikiart_parquet(path, image_column="image"):
    """huggan/wikiart's schema: image, artist (ClassLabel with "Unknown Artist"), genre, style."""
    artists = ["Unknown Artist", "claude-monet", "pablo-picasso", "vincent-van-gogh"]
    rows = [1, 0, 2, 3, 1, 0, 2, 1, 3, 0]
    features = datasets.Features(
        {
            image_column: datasets.Image(),
            "artist": datasets.ClassLabel(names=artists),
            "genre": datasets.Value("string"),
            "style": datasets.ClassLabel(names=["Cubism", "Impressionism", "Post_Impressionism"]),
        }
    )
    style_of = {0: 1, 1: 1, 2: 0, 3: 2}
    ds = datasets.Dataset.from_dict(
        {
            image_column: [{"bytes": png_bytes(i), "path": None} for i in range(len(rows))],
            "artist": rows,
            "genre": ["landscape" if r != 2 else "portrait" for r in rows],
            "style": [style_of[r] for r in rows],
        },
        features=features,
    )
    ds.to_parquet(str(path))
    return path


def test_hub_parquet_drops_unknown_artist_rows_and_class(tmp_path):
    path = write_wikiart_parquet(tmp_path / "wikiart.parquet")
    assert detect_source(str(path)) == "hub"
    ds = load_source(str(path))
    assert ds.column_names == ["image", "artist"]
    assert ds.features["artist"].names == ["claude-monet", "pablo-picasso", "vincent-van-gogh"]
    assert artist_counts(ds) == {"claude-monet": 3, "pablo-picasso": 2, "vincent-van-gogh": 2}
    first = ds[0]["image"]
    assert Image.open(io.BytesIO(first["bytes"])).size == (48, 40)


def test_hub_folder_of_parquet_files_and_keeping_unknown(tmp_path):
    folder = tmp_path / "wikiart"
    (folder / "data").mkdir(parents=True)
    write_wikiart_parquet(folder / "data" / "train-00000.parquet")
    assert detect_source(str(folder)) == "hub"
    ds = load_source(str(folder), drop_labels=())
    assert "Unknown Artist" in ds.features["artist"].names and len(ds) == 10


@pytest.mark.parametrize(
    "column, expected",
    [
        ("style", {"Cubism": 2, "Impressionism": 6, "Post_Impressionism": 2}),  # a ClassLabel column
        ("genre", {"landscape": 8, "portrait": 2}),  # a plain string column
    ],
)
def test_hub_other_label_column(tmp_path, column, expected):
    path = write_wikiart_parquet(tmp_path / "wikiart.parquet")
    ds = load_source(str(path), label_column=column)
    assert ds.column_names == ["image", "artist"]
    assert artist_counts(ds) == expected


def test_hub_string_labels_drop_unknown_too(tmp_path):
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": png_bytes(i), "path": None} for i in range(4)],
         "artist": ["Monet", "Unknown Artist", "Manet", None]},
        features=datasets.Features({"image": datasets.Image(), "artist": datasets.Value("string")}),
    )
    ds.to_parquet(str(tmp_path / "d.parquet"))
    out = load_source(str(tmp_path / "d.parquet"))
    assert out.features["artist"].names == ["Manet", "Monet"] and len(out) == 2


def test_hub_image_column_with_another_name(tmp_path):
    path = write_wikiart_parquet(tmp_path / "w.parquet", image_column="picture")
    ds = load_source(str(path))
    assert ds.column_names == ["image", "artist"] and len(ds) == 7


def test_hub_missing_label_column_names_the_columns(tmp_path):
    path = write_wikiart_parquet(tmp_path / "w.parquet")
    with pytest.raises(DataError, match=r"no column 'painter'.*'genre'.*--label-column"):
        load_source(str(path), label_column="painter")


def test_hub_id_offline_is_a_clear_error():
    with pytest.raises(DataError, match="not a local folder or file"):
        load_source("nobody-here/no-such-dataset")


# ---- fingerprint: the "same pictures" part of the cache key


def test_fingerprint_of_files_follows_their_content(tmp_path):
    root = tmp_path / "p"
    for artist in ("A", "B"):
        (root / artist).mkdir(parents=True)
        for i in range(2):
            painting(i).save(root / artist / f"{i}.png")
    first = fingerprint(load_source(str(root)))
    assert fingerprint(load_source(str(root))) == first
    os.utime(root / "A" / "0.png", ns=(1, 1))  # touched: the file may have changed
    touched = fingerprint(load_source(str(root)))
    assert touched != first
    painting(7).save(root / "B" / "new.png")
    assert fingerprint(load_source(str(root))) not in (first, touched)
    ds = load_source(str(root))
    (root / "B" / "new.png").unlink()  # a file gone since listing: no crash, a different key
    assert fingerprint(ds) != fingerprint(load_source(str(root)))


def bytes_dataset(values) -> datasets.Dataset:
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": png_bytes(v), "path": None} for v in values], "artist": [0, 1, 1]},
        features=datasets.Features(
            {"image": datasets.Image(decode=False), "artist": datasets.ClassLabel(names=["a", "b"])}
        ),
    )
    ds.info.description = "tim source test:memory"
    return ds


def test_fingerprint_of_in_memory_bytes_follows_the_bytes_not_the_object():
    """Two datasets built separately from the same bytes share a key (so a new process reuses the cache);
    datasets' fallback, a random fingerprint, would rebuild the cache every run."""
    first = fingerprint(bytes_dataset([10, 20, 30]))
    assert fingerprint(bytes_dataset([10, 20, 30])) == first
    assert fingerprint(bytes_dataset([10, 20, 31])) != first
