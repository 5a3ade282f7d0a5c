"""Pictures answered painting by painting: the CSV rows `tim predict` writes for photos with paintings in them,
and "this doesn't look like a painting" fitted by `tim calibrate --not-paintings` and answered by every path.

Generated pictures only: a plain wall with two textured 'paintings' hung on it at known corners, generated
'paintings' of three artists, and 'documents' and 'stripes' that are no paintings; tiny random-init models.
"""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from app_helpers import make_checkpoint
from PIL import Image
from safetensors.torch import load_file, save_file

from tim.checkpoint import PAINTING_NAME, CheckpointError, read_config, save_checkpoint
from tim.cli import main
from tim.data import DataConfig, prepare_data
from tim.models import TextureTap, texture_size
from tim.painting import PaintingDetector, split_classes
from tim.predictor import Predictor
from tim.recipe import data_config_for
from tim.validate import validate_checkpoint

# the columns before issue 19, in their places (artist_name: issue 21)
OLD_COLUMNS = ["path", "artist", "confidence", "top5", "error", "known", "unknown_score", "artist_name"]
# where the two paintings hang on the wall: (left, top, width, height), the larger first
HUNG = [(40, 60, 160, 120), (290, 150, 120, 100)]


def art(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.uniform(30, 220, 3) + rng.normal(0, 50, (height, width, 3)), 0, 255)


def gallery_wall(path: Path) -> Path:
    """A smooth beige wall (480x320) with the two paintings of HUNG on it."""
    rng = np.random.default_rng(0)
    wall = np.full((320, 480, 3), (205, 195, 180), np.float32) + rng.normal(0, 3, (320, 480, 3))
    for n, (left, top, w, h) in enumerate(HUNG):
        wall[top : top + h, left : left + w] = art(h, w, n + 1)
    Image.fromarray(wall.clip(0, 255).astype(np.uint8)).save(path)
    return path


def predict_rows(tmp_path, *args) -> tuple[list[str], list[dict]]:
    out = tmp_path / "out.csv"
    assert main(["predict", *map(str, args), "--out", str(out)]) == 0
    with open(out, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [dict(zip(header, row)) for row in reader]


@pytest.fixture
def model(tmp_path):
    return make_checkpoint(tmp_path / "model", "test_efficientnet", image_size=64)


def test_two_paintings_on_a_wall_give_two_rows_with_their_corners(tmp_path, model):
    photo = gallery_wall(tmp_path / "wall.png")
    scan = tmp_path / "scan.png"
    Image.fromarray(art(90, 120, 7).astype(np.uint8)).save(scan)
    header, rows = predict_rows(tmp_path, photo, scan, "--model", model)

    assert header[:8] == OLD_COLUMNS and header[8:] == ["painting", "region", "corners"]
    assert [(Path(r["path"]).name, r["region"]) for r in rows] == [("wall.png", "1"), ("wall.png", "2"),
                                                                   ("scan.png", "0")]
    for row, (left, top, w, h) in zip(rows, HUNG):
        corners = np.array(row["corners"].split(), dtype=float).reshape(4, 2)
        expected = np.array([[left, top], [left + w, top], [left + w, top + h], [left, top + h]])
        assert np.abs(corners - expected).max() <= 6, corners  # clockwise from top-left, within a few pixels
        assert row["painting"] == "1" and row["artist"] and row["error"] == ""
    assert rows[2]["corners"] == "" and rows[2]["painting"] == "1"  # a checkpoint without the decision: paintings


def test_whole_answers_each_file_once_as_before(tmp_path, model):
    photo = gallery_wall(tmp_path / "wall.png")
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    _, located = predict_rows(tmp_path, photo, "--model", model)
    header, rows = predict_rows(tmp_path, photo, broken, "--model", model, "--whole")
    assert header[:8] == OLD_COLUMNS
    assert [(Path(r["path"]).name, r["region"], r["corners"]) for r in rows] == [("wall.png", "0", ""),
                                                                                 ("broken.jpg", "", "")]
    assert rows[1]["error"] and rows[0]["confidence"] != located[0]["confidence"]  # the wall is in the picture
    whole = Predictor.load(str(model)).predict([str(photo)])[0]  # the old API answers the file whole
    assert float(rows[0]["confidence"]) == pytest.approx(whole.confidence, abs=1e-5) and whole.region == 0


def test_the_straightened_painting_is_what_the_model_answers(tmp_path, model):
    from tim import locate

    photo = gallery_wall(tmp_path / "wall.png")
    predictor = Predictor.load(str(model))
    [answers] = predictor.analyse([str(photo)], explain=True)
    assert [e.prediction.region for e in answers] == [1, 2]
    painting = locate.straighten(Image.open(photo).convert("RGB"), answers[0].prediction.corners)
    assert answers[0].picture.size == painting.size  # the CAM is drawn on the straightened painting
    assert answers[0].overlay.shape[:2] == painting.size[::-1]
    assert answers[0].outlined is answers[1].outlined and answers[0].outlined.size == (480, 320)
    painting.save(tmp_path / "straightened.png")
    direct = predictor.predict([str(tmp_path / "straightened.png")])[0]
    assert answers[0].prediction.artist == direct.artist
    assert answers[0].prediction.confidence == pytest.approx(direct.confidence, abs=1e-4)


# ---------------------------------------------------------------- not a painting

ARTISTS = ["Anna", "Bruno", "Carla"]
BASES = {"Anna": (200, 40, 40), "Bruno": (40, 200, 40), "Carla": (40, 40, 200)}


def paintings_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for artist in ARTISTS:
        (root / artist).mkdir(parents=True)
        for i in range(16):
            pixels = np.clip(np.array(BASES[artist]) + rng.normal(0, 60, size=(30, 40, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / artist / f"{artist}_{i:02d}.png")
    return root


def not_paintings_folder(root: Path) -> Path:
    """Eight 'classes' (file name up to '_') of things that are no painting: white pages of black lines."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for c in range(8):
        for i in range(3):
            page = np.full((60, 45), 245, np.uint8)
            for row in range(6, 54, 4 + c % 3):
                page[row, 4 : int(rng.integers(20, 41))] = 20
            Image.fromarray(page).convert("RGB").save(root / f"n{c:03d}_page{i}.png")
    return root


@pytest.fixture
def calibrated(tmp_path):
    paintings = paintings_folder(tmp_path / "paintings")
    pages = not_paintings_folder(tmp_path / "pages")
    recipe = DataConfig(source=str(paintings), min_images=1, fractions=(0.5, 0.25, 0.25), duplicate_distance=-1,
                        image_size=32).to_dict()
    torch.manual_seed(0)
    folder = save_checkpoint(timm.create_model("test_resnet", num_classes=3), tmp_path / "best", ARTISTS,
                             {"resize_mode": "pad", "image_size": 32, "pad_color": [0, 0, 0]}, {"data": recipe})
    assert main(["calibrate", str(folder), "--data", str(paintings), "--not-paintings", str(pages)]) == 0
    return folder, paintings, pages


def test_calibrate_fits_not_a_painting_and_predict_says_so(calibrated, tmp_path, capsys):
    folder, paintings, pages = calibrated
    config = read_config(folder)
    block = config["tim"]["painting"]
    assert (folder / PAINTING_NAME).is_file() and block["file"] == PAINTING_NAME
    assert not set(block["fit_classes"]) & set(block["report_classes"]) and len(block["fit_classes"]) == 4
    assert block["held_out"]["validation_scans_rejected"] <= 0.01 + 1e-9  # the threshold keeps 99% of the scans
    assert block["held_out"]["not_paintings_pictures"] == 12 and set(block["held_out"]["validation_photos_rejected"]) \
        == {"phone", "oblique"}

    held_out = [p for p in sorted(pages.iterdir()) if p.name.split("_")[0] in block["report_classes"]]
    # the validation scans the threshold was set on (it lets 99% of them pass: here all 12): `tim predict` must
    # answer them as calibrate did, each whole and as a painting
    scans = prepare_data(data_config_for(config, {"source": str(paintings)})).splits["validation"]["path"]
    _, rows = predict_rows(tmp_path, *held_out, *scans, "--model", folder)
    page_rows = [r for r in rows if Path(r["path"]).parent == pages]
    scan_rows = [r for r in rows if Path(r["path"]).parent != pages]
    assert page_rows and all(r["painting"] == "0" and r["known"] == "0" for r in page_rows)  # not known either
    assert len(scan_rows) == 12 and all(r["painting"] == "1" and r["region"] == "0" for r in scan_rows)

    assert main(["evaluate", str(folder), "--data", str(paintings), "--not-paintings", str(pages),
                 "--resamples", "20"]) == 0
    report = json.loads((folder / "eval_results.json").read_text())["painting"]
    assert report["not_paintings_held_out"] == len(held_out) and report["not_paintings_rejected"] == 1.0
    assert "held-out non-painting photos" in capsys.readouterr().out


def test_evaluate_photos_reports_each_style_the_same_in_two_runs(calibrated, capsys):
    folder, paintings, _ = calibrated
    reports = []
    for _ in range(2):
        assert main(["evaluate", str(folder), "--data", str(paintings), "--photos", "4", "--resamples", "20"]) == 0
        reports.append(json.loads((folder / "eval_results.json").read_text())["photos"])
    first = reports[0]
    assert first["images"] == 4 and set(first) == {"images", "seed", "accuracy_clean", "phone", "oblique"}
    right = [r["true"] == r["predicted"] for r in csv.DictReader(open(folder / "predictions.csv"))]
    picks = np.random.default_rng(0).choice(len(right), 4, replace=False)  # the sample: 4 paintings, seed 0
    assert first["accuracy_clean"] == np.mean(np.array(right)[picks])  # the same paintings as clean scans
    for style in ("phone", "oblique"):
        row = first[style]
        assert all(0 <= row[f"accuracy_{k}"] <= 1 for k in ("whole", "located", "cropped"))
        assert 0 <= row["not_a_painting"] <= 1 and row["paintings_found_mean"] >= 1  # every photo gives an answer
    assert reports[1] == first  # seeded: the same photos, the same answers
    assert "simulated phone photos of 4 paintings" in capsys.readouterr().out
    assert main(["card", str(folder)]) == 0  # the card puts the photos beside the same paintings as scans
    card = (folder / "README.md").read_text()
    assert f"beside {first['accuracy_clean']:.3f} on the same paintings as clean scans" in card


def test_a_checkpoint_without_the_decision_counts_every_picture_as_a_painting(calibrated):
    folder, _, pages = calibrated
    config = read_config(folder)
    del config["tim"]["painting"]
    (folder / "config.json").write_text(json.dumps(config))
    (folder / PAINTING_NAME).unlink()
    predictor = Predictor.load(str(folder))
    assert predictor.painting is None
    [answers] = predictor.analyse([str(next(pages.iterdir()))])
    assert all(p.painting and p.painting_score is None for p in answers)


@pytest.mark.parametrize("engine", ["eager", "auto"])
def test_the_decision_reads_texture_and_answers_alike_with_and_without_grad_cam(calibrated, engine):
    folder, _, pages = calibrated
    block = read_config(folder)["tim"]["painting"]
    predictor = Predictor.load(str(folder), engine=engine)
    head = load_file(str(folder / PAINTING_NAME))
    assert block["inputs"] == ["features", "texture"] and "texture statistics" in block["score"]
    assert head["mean"].shape == (predictor.model.num_features + texture_size(predictor.model),)
    pictures = [str(p) for p in sorted(pages.iterdir())[:3]]
    plain = [a[0].painting_score for a in predictor.analyse(pictures, whole=True)]
    explained = [a[0].prediction.painting_score for a in predictor.analyse(pictures, whole=True, explain=True)]
    assert np.allclose(plain, explained, atol=1e-4)  # Grad-CAM's forward gives the decision the same texture


def test_a_head_fitted_before_texture_still_answers_on_features_alone(calibrated):
    folder, _, pages = calibrated
    predictor = Predictor.load(str(folder))
    d = predictor.model.num_features
    head = {k: v.float() for k, v in load_file(str(folder / PAINTING_NAME)).items()}
    old = {"mean": head["mean"][:d], "scale": head["scale"][:d], "coef": head["coef"][:, :d],
           "intercept": head["intercept"]}
    save_file({k: v.contiguous() for k, v in old.items()}, str(folder / PAINTING_NAME))
    config = read_config(folder)
    del config["tim"]["painting"]["inputs"]  # what `tim calibrate` wrote before the texture
    (folder / "config.json").write_text(json.dumps(config))
    validate_checkpoint(folder)
    predictor = Predictor.load(str(folder))
    x = torch.stack([predictor.preprocess(str(p))[0] for p in sorted(pages.iterdir())[:4]])
    outputs = predictor.outputs(x)
    z = (outputs.features - old["mean"]) / old["scale"]
    want = (z @ old["coef"].T + old["intercept"]).softmax(-1)[:, 0]
    assert torch.allclose(predictor.answer(*outputs).painting_score, want, atol=1e-5)


def test_a_head_that_reads_something_else_is_refused_naming_the_key(calibrated):
    folder, _, _ = calibrated
    config = read_config(folder)
    config["tim"]["painting"]["inputs"] = ["features", "pixels"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="tim.painting.inputs"):
        validate_checkpoint(folder)


@pytest.mark.parametrize("name", ["test_efficientnet", "test_resnet", "test_convnext"])
def test_texture_is_the_spread_of_timms_stage_before_last(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        [stage] = model.forward_intermediates(x, indices=[len(model.feature_info) - 2], intermediates_only=True)
    want = torch.cat([stage.mean((2, 3)), stage.std((2, 3))], dim=1)
    tap = TextureTap(model)
    with torch.inference_mode():
        model.forward_features(x)
        texture = tap.take()
    assert texture.shape == (2, texture_size(model)) and torch.allclose(texture, want, atol=1e-5)
    assert tap.take() is None  # handed over once: a later answer never reads a stale texture
    tap.close()
    with torch.inference_mode():
        model.forward_features(x)
    assert tap.take() is None


def test_not_paintings_are_split_by_class_reproducibly():
    files = [(f"{c}_{i}.jpg", c) for c in "abcdefgh" for i in range(3)]
    fit, held = split_classes(files, 0.5, seed=0)
    assert {c for _, c in fit}.isdisjoint({c for _, c in held}) and len(fit) == len(held) == 12
    assert split_classes(files, 0.5, seed=0) == (fit, held)


def test_a_painting_block_without_its_file_is_refused_with_what_to_do(tmp_path):
    config = {"tim": {"painting": {"file": PAINTING_NAME, "threshold": 0.5}}}
    with pytest.raises(CheckpointError, match="tim calibrate --not-paintings"):
        PaintingDetector.from_checkpoint(config, tmp_path)


def test_only_painting_refits_the_decision_and_keeps_calibration_and_unknown(calibrated):
    folder, paintings, pages = calibrated
    before = read_config(folder)["tim"]
    assert main(["calibrate", str(folder), "--data", str(paintings), "--not-paintings", str(pages),
                 "--only-painting", "--seed", "1"]) == 0
    after = read_config(folder)["tim"]
    assert after["calibration"] == before["calibration"] and after["unknown"] == before["unknown"]
    assert after["painting"]["seed"] == 1 and (folder / PAINTING_NAME).is_file()
    assert Predictor.load(str(folder)).painting.threshold == pytest.approx(after["painting"]["threshold"])


def test_reframed_shots_are_other_views_of_the_photo_and_repeat_with_their_seed():
    from tim.photos import reframed

    photo = Image.fromarray(art(90, 120, 7).astype(np.uint8))
    shots = reframed(photo, 3, seed=5)
    assert len(shots) == 3 and all(s.mode == "RGB" for s in shots)
    assert len({s.tobytes() for s in shots}) == 3  # three different framings
    assert [s.tobytes() for s in reframed(photo, 3, seed=5)] == [s.tobytes() for s in shots]
    assert reframed(photo, 1, seed=6)[0].tobytes() != shots[0].tobytes()


def other_artists_folder(root: Path) -> Path:
    """Four artists the model does not know, six paintings each."""
    rng = np.random.default_rng(2)
    for n, artist in enumerate(["Dora", "Emil", "Fritz", "Greta"]):
        (root / artist).mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(rng.uniform(0, 255, 3) + rng.normal(0, 40, size=(30, 40, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / artist / f"{artist}_{i}.png")
    return root


def test_the_decision_is_fitted_on_other_artists_as_photos_and_never_on_the_held_out_ones(calibrated, tmp_path):
    folder, paintings, pages = calibrated
    others = other_artists_folder(tmp_path / "others")
    assert main(["calibrate", str(folder), "--data", str(paintings), "--not-paintings", str(pages),
                 "--unknown", str(others)]) == 0
    tim = read_config(folder)["tim"]
    fitted = tim["painting"]["fitted_on"]
    fit_paintings = 6 * len(tim["unknown"]["fit_artists"])
    assert fitted["paintings"]["other artists (fit part)"] == fit_paintings
    # every fit painting photographed in each style (a photo answers with at least one piece)
    assert fitted["paintings"]["simulated photos of other artists (fit part)"] >= 2 * fit_paintings
    # each fit not-painting photo: whole, located (here used whole again) and 6 other shots
    assert fitted["not_paintings"]["pieces (whole + located + reframed)"] == 8 * fitted["not_paintings"]["pictures"]

    # refitting only this decision keeps to the artists the unknown-artist decision was fitted on
    assert main(["calibrate", str(folder), "--data", str(paintings), "--not-paintings", str(pages),
                 "--only-painting", "--unknown", str(others)]) == 0
    again = read_config(folder)["tim"]
    assert again["unknown"] == tim["unknown"]
    assert again["painting"]["fitted_on"]["paintings"]["other artists (fit part)"] == fit_paintings
