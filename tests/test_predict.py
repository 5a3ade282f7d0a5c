"""`tim predict`: CSV rows, bad files, folder recursion, Grad-CAM files, and the bundled default model."""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import pytest
from app_helpers import ARTISTS, make_checkpoint, picture, save
from processes import REPO, free_port, two_cpu_processes
from PIL import Image

import tim.catalog
from tim import predict
from tim.predictor import Predictor


@pytest.fixture(autouse=True)
def _engine_on(monkeypatch):
    monkeypatch.setenv("TIM_ENGINE", "auto")  # the path `tim predict` takes on a user's CPU


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    predict.add_cli(parser.add_subparsers())
    args = parser.parse_args(["predict", *argv])
    return args.func(args)


def read(csv_path: Path) -> list[dict]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "resnet", "test_resnet", image_size=96)


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "paintings"
    save(picture(200, 120, seed=1), root / "a.jpg")
    save(picture(120, 200, seed=2), root / "monet" / "b.png")
    save(picture(150, 150, seed=3), root / "monet" / "deeper" / "c.JPEG")
    (root / "monet" / "broken.jpg").write_bytes(b"GIF89a nope")
    (root / "notes.txt").write_text("not a picture, and not picked up from a folder")
    (root / ".hidden").mkdir()
    save(picture(50, 50), root / ".hidden" / "skip.jpg")
    return root


def test_rows_for_files_and_folders_with_errors(checkpoint, folder, tmp_path):
    out = tmp_path / "results.csv"
    loose = save(picture(90, 60, seed=4), tmp_path / "loose.webp")
    assert run_cli([str(folder), str(loose), str(tmp_path / "missing.jpg"), "--model", str(checkpoint),
                    "--out", str(out), "--batch-size", "2", "--workers", "2"]) == 0
    rows = read(out)
    # the columns of every earlier Tim in their places, then artist_name (issue 21), then issue 19's
    assert list(rows[0]) == ["path", "artist", "confidence", "top5", "error", "known", "unknown_score", "artist_name",
                             "painting", "region", "corners"]
    names = [Path(r["path"]).name for r in rows]
    assert names == ["a.jpg", "b.png", "broken.jpg", "c.JPEG", "loose.webp", "missing.jpg"]  # sorted per folder
    by_name = dict(zip(names, rows))
    for name in ("a.jpg", "b.png", "c.JPEG", "loose.webp"):
        row = by_name[name]
        assert row["error"] == "" and row["artist"] in ARTISTS
        top = [part.rsplit(":", 1) for part in row["top5"].split("; ")]
        assert len(top) == 5 and top[0][0] == row["artist_name"] and float(top[0][1]) == pytest.approx(
            float(row["confidence"]), abs=1e-4)
    assert by_name["broken.jpg"]["artist"] == "" and "broken.jpg" in by_name["broken.jpg"]["error"]
    assert "no such file" in by_name["missing.jpg"]["error"]


def test_predictions_match_the_predictor(checkpoint, folder, tmp_path):
    out = tmp_path / "results.csv"
    assert run_cli([str(folder), "--model", str(checkpoint), "--out", str(out), "--workers", "0"]) == 0
    rows = [r for r in read(out) if not r["error"]]
    expected = Predictor.load(str(checkpoint)).predict([r["path"] for r in rows])
    assert [r["artist"] for r in rows] == [p.artist for p in expected]
    assert [float(r["confidence"]) for r in rows] == pytest.approx([p.confidence for p in expected], abs=1e-5)


def test_the_csv_names_artists_as_the_app_does_and_keeps_the_key(folder, tmp_path):
    import timm

    from tim.app import headline
    from tim.checkpoint import save_checkpoint

    keys = ["Claude_Monet", "Pierre-Auguste_Renoir", "Rembrandt"]
    model = timm.create_model("test_resnet", num_classes=3)
    ckpt = save_checkpoint(model, tmp_path / "keys", keys, {"resize_mode": "pad", "image_size": 64})
    out = tmp_path / "results.csv"
    assert run_cli([str(folder), "--model", str(ckpt), "--out", str(out), "--workers", "0", "--top-k", "3"]) == 0
    good = [r for r in read(out) if not r["error"]]
    expected = Predictor.load(str(ckpt)).predict([r["path"] for r in good], k=3)
    for row, p in zip(good, expected):
        assert row["artist"] == p.artist in keys
        assert row["artist_name"] == headline(p, len(keys)) == p.artist.replace("_", " ")  # what the app shows
        assert [part.rsplit(":", 1)[0] for part in row["top5"].split("; ")] == [a.replace("_", " ") for a, _ in p.top]
    broken = next(r for r in read(out) if r["error"])
    assert broken["artist"] == broken["artist_name"] == ""


def test_a_rejected_painting_is_marked_unknown_and_keeps_its_closest_artist(folder, tmp_path):
    rejecting = make_checkpoint(tmp_path / "rejecting", "test_resnet", rejects_all=True)
    out = tmp_path / "results.csv"
    assert run_cli([str(folder), "--model", str(rejecting), "--out", str(out), "--workers", "0"]) == 0
    good = [r for r in read(out) if not r["error"]]
    assert len(good) == 3
    for row in good:
        assert row["known"] == "0" and row["artist"] in ARTISTS and float(row["unknown_score"]) > -1.0
    calibrated = Predictor.load(str(rejecting)).predict([str(folder / "a.jpg")])[0]
    assert float(good[0]["confidence"]) == pytest.approx(calibrated.confidence, abs=1e-5)  # the calibrated one


def test_cam_dir_gets_one_overlay_per_good_image_at_its_shape(checkpoint, folder, tmp_path):
    out, cams = tmp_path / "results.csv", tmp_path / "cams"
    assert run_cli([str(folder), "--model", str(checkpoint), "--out", str(out), "--cam-dir", str(cams),
                    "--workers", "1"]) == 0
    rows = {Path(r["path"]).name: r for r in read(out)}
    assert rows["broken.jpg"]["cam"] == ""
    assert Path(rows["b.png"]["cam"]) == cams / "monet" / "b_cam.jpg"
    assert Image.open(rows["b.png"]["cam"]).size == (120, 200)
    assert Image.open(rows["c.JPEG"]["cam"]).size == (150, 150)
    assert len(list(cams.rglob("*_cam.jpg"))) == 3


def test_the_bundled_model_that_knows_the_most_artists_is_the_default(tmp_path, monkeypatch):
    """A 50-artist and a 15-artist model ship together: the broader one is chosen, whatever the folder names."""
    import json

    bundled = tmp_path / "bundled"
    make_checkpoint(bundled / "a-fewer", "test_efficientnet", image_size=64)
    more = make_checkpoint(bundled / "z-more", "test_efficientnet", image_size=64)
    config = json.loads((more / "config.json").read_text())
    config["label_names"] = config["label_names"] + ["Another_Artist"]  # only what the catalog reads
    (more / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(tim.catalog, "BUNDLED_DIR", bundled)
    assert tim.catalog.default_model() == str(bundled / "z-more")
    assert [p.name for p in tim.catalog.bundled_checkpoints()] == ["z-more", "a-fewer"]


def test_the_first_bundled_model_is_the_default(folder, tmp_path, monkeypatch, capsys):
    bundled = tmp_path / "bundled"
    make_checkpoint(bundled / "b-second", "test_resnet", image_size=64)
    make_checkpoint(bundled / "a-first", "test_efficientnet", image_size=64)
    (bundled / "examples").mkdir()
    monkeypatch.setattr(tim.catalog, "BUNDLED_DIR", bundled)
    assert tim.catalog.default_model() == str(bundled / "a-first")
    out = tmp_path / "results.csv"
    assert run_cli([str(folder / "a.jpg"), "--out", str(out), "--workers", "0"]) == 0
    assert str(bundled / "a-first") in capsys.readouterr().out
    assert read(out)[0]["artist"] in ARTISTS


def test_no_bundled_model_and_no_model_is_a_clear_error(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tim.catalog, "BUNDLED_DIR", tmp_path / "nothing-here")
    assert run_cli([str(folder), "--out", str(tmp_path / "r.csv")]) == 2
    assert "no bundled model" in capsys.readouterr().err and not (tmp_path / "r.csv").exists()


def test_registered_in_the_tim_command(capsys):
    from tim.cli import build_parser

    args = build_parser("predict").parse_args(["predict", "a.jpg", "--out", "r.csv"])
    assert callable(args.func)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "predict" in capsys.readouterr().out


def test_accelerate_launch_two_processes_write_one_csv_in_input_order(checkpoint, folder, tmp_path):
    """Two CPU processes split the images; one CSV, in input order, every image exactly once."""
    import subprocess

    for i in range(5):  # 9 inputs: an odd count, so the processes get unequal shares
        save(picture(80, 70, seed=10 + i), folder / "more" / f"{i}.jpg")
    single, out = tmp_path / "single.csv", tmp_path / "launched.csv"
    assert run_cli([str(folder), "--model", str(checkpoint), "--out", str(single)]) == 0
    cmd, env = two_cpu_processes("-m", "tim", "predict", str(folder), "--model", str(checkpoint), "--out", str(out))
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("images with") == 1, "only the main process reports"
    launched, expected = read(out), read(single)
    assert [r["path"] for r in launched] == [r["path"] for r in expected]  # input order, each once
    assert len({r["path"] for r in launched}) == len(launched) == 9
    assert [r["artist"] for r in launched] == [r["artist"] for r in expected]
    assert [float(r["confidence"] or 0) for r in launched] == pytest.approx(
        [float(r["confidence"] or 0) for r in expected], abs=1e-4)


def test_the_tim_command_closes_the_process_group_it_ran_under(checkpoint, folder, tmp_path):
    """A process left with its gloo group open can abort at exit after its work is done, failing the launch."""
    import torch.distributed as dist

    from tim.cli import main

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        assert main(["predict", str(folder), "--model", str(checkpoint), "--out", str(tmp_path / "r.csv")]) == 0
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
