"""Calibrated confidence and "not one of the artists I know": fitting, thresholds, the CLI, old checkpoints.

Synthetic logits test the maths; a tiny random `test_resnet` over generated paintings (3 artists, 32 px)
plus a folder of 4 "other artists" tests `tim calibrate` and `tim evaluate --unknown` end to end.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from tim.calibration import METHODS, Calibration, calibrated_probabilities, ece, fit, fit_best
from tim.checkpoint import UNKNOWN_NAME, read_config, save_checkpoint
from tim.cli import main
from tim.data import DataConfig
from tim.openset import SCORES, UnknownDetector, split_artists, threshold_for
from tim.predictor import Predictor

ARTISTS = ["Anna", "Bruno", "Carla"]
OTHERS = ["Dora", "Emil", "Fritz", "Greta"]
PREPROCESSING = {"resize_mode": "pad", "image_size": 32, "pad_color": [0, 0, 0]}
BASES = {"Anna": (200, 40, 40), "Bruno": (40, 200, 40), "Carla": (40, 40, 200), "Dora": (200, 200, 40),
         "Emil": (40, 200, 200), "Fritz": (200, 40, 200), "Greta": (120, 120, 120)}


def overconfident_logits(n=3000, k=5, scale=4.0, seed=0):
    """Logits whose softmax is the true probability, and the same logits x `scale` (an over-confident model)."""
    rng = np.random.default_rng(seed)
    true = rng.normal(0, 1.2, (n, k))
    probs = torch.tensor(true).softmax(-1).numpy()
    labels = np.array([rng.choice(k, p=p) for p in probs])
    return (true * scale).astype(np.float32), labels


def test_calibration_lowers_the_ece_of_an_overconfident_model_and_never_moves_the_answer():
    logits, labels = overconfident_logits()
    fit_part, check = slice(0, 1500), slice(1500, None)
    before = ece(torch.tensor(logits[check]).softmax(-1).numpy(), labels[check])
    best, table = fit_best(logits[fit_part], labels[fit_part])
    assert {row["method"] for row in table} == {"none (softmax)", *METHODS}
    for method in METHODS:
        cal = fit(logits[fit_part], labels[fit_part], method)
        probs = calibrated_probabilities(torch.tensor(logits[check]), cal).numpy()
        assert ece(probs, labels[check]) < before / 2, method  # judged on images it was not fitted on
        assert (probs.argmax(1) == logits[check].argmax(1)).all()
    assert best.temperature == pytest.approx(4.0, rel=0.25)  # it undoes the x4
    restored = Calibration.from_config({"tim": {"calibration": best.to_dict()}})
    assert torch.allclose(restored.probabilities(torch.tensor(logits)), best.probabilities(torch.tensor(logits)))
    assert Calibration.from_config({"tim": {}}) is None


def test_the_threshold_keeps_the_stated_share_of_known_paintings():
    scores = np.random.default_rng(1).normal(size=341)
    for retention in (0.5, 0.9, 0.95, 1.0):
        kept = (scores <= threshold_for(scores, retention)).mean()
        assert retention <= kept < retention + 2 / 341


def test_entropy_calls_an_answer_spread_over_many_artists_less_known_than_one_torn_between_two():
    """Both answers give their top artist 50%: max-probability cannot tell them apart, entropy can."""
    probs = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.5, 0.17, 0.17, 0.16], [1.0, 0.0, 0.0, 0.0], [0.25] * 4])
    detector = UnknownDetector("entropy", threshold=0.9)
    scores = detector.score(probs.log(), torch.zeros(4, 8), probs)
    assert scores[2] == pytest.approx(0.0, abs=1e-6) and scores[3] == pytest.approx(np.log(4), abs=1e-6)
    assert scores[0] < scores[1]
    top = UnknownDetector("max-probability", 0.9).score(probs.log(), torch.zeros(4, 8), probs)
    assert top[0] == top[1] == 0.5  # where max-probability sees no difference
    assert detector.to_config() == {"score": "entropy", "threshold": 0.9}  # nothing fitted, no statistics file
    assert (scores <= detector.threshold).tolist() == [True, False, True, False]


def test_other_artists_are_split_by_artist_reproducibly():
    names = [f"artist{i}" for i in range(10)]
    fit_part, report = split_artists(names, 0.5, seed=3)
    assert len(fit_part) == len(report) == 5 and not set(fit_part) & set(report)
    assert split_artists(names, 0.5, seed=3) == (fit_part, report)
    assert split_artists(names, 0.5, seed=4) != (fit_part, report)


# ---------------------------------------------------------------- end to end


def paint(root: Path, artists, per_artist: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for artist in artists:
        (root / artist).mkdir(parents=True)
        for i in range(per_artist):
            pixels = np.clip(np.array(BASES[artist]) + rng.integers(-40, 40, size=(30, 40, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / artist / f"{artist}_{i:02d}.png")
    return root


@pytest.fixture
def setup(tmp_path):
    paintings = paint(tmp_path / "paintings", ARTISTS, 16)
    others = paint(tmp_path / "others", OTHERS, 6, seed=1)
    recipe = DataConfig(source=str(paintings), min_images=1, fractions=(0.5, 0.25, 0.25), duplicate_distance=-1,
                        image_size=32).to_dict()
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=3)
    with torch.no_grad():  # deliberately over-confident: large logits
        model.get_classifier().weight.mul_(30)
    folder = save_checkpoint(model, tmp_path / "best", ARTISTS, PREPROCESSING, extra={"data": recipe})
    return folder, paintings, others


def test_tim_calibrate_then_evaluate_on_held_out_other_artists(setup, capsys):
    folder, paintings, others = setup
    before = Predictor.load(str(folder)).predict([str(next((paintings / "Anna").iterdir()))])[0]
    weights = (folder / "model.safetensors").read_bytes()

    assert main(["calibrate", str(folder), "--data", str(paintings), "--unknown", str(others),
                 "--retention", "0.75", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Calibration on 12 validation images" in printed
    for score in ("max-probability", "mahalanobis", "outlier-exposure"):
        assert score in printed  # the candidates, side by side

    config = read_config(folder)
    unknown, cal = config["tim"]["unknown"], config["tim"]["calibration"]
    assert (folder / "model.safetensors").read_bytes() == weights  # the weights are not touched
    assert cal["fitted_on"]["ece_after"] <= cal["fitted_on"]["ece_before"]
    assert unknown["score"] in SCORES and unknown["retention"] == 0.75 and unknown["validation_kept"] >= 0.75
    assert len(unknown["fit_artists"]) == len(unknown["report_artists"]) == 2
    assert not set(unknown["fit_artists"]) & set(unknown["report_artists"])
    assert (folder / UNKNOWN_NAME).is_file() == bool(UnknownDetector.from_checkpoint(config, folder).tensors)

    predictor = Predictor.load(str(folder))
    assert predictor.calibration.method == cal["method"] and predictor.unknown.score_name == unknown["score"]
    after = predictor.predict([str(next((paintings / "Anna").iterdir()))])[0]
    assert after.artist == before.artist and after.unknown_score is not None  # calibration never moves the answer

    assert main(["evaluate", str(folder), "--data", str(paintings), "--unknown", str(others),
                 "--resamples", "50"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((folder / "eval_results.json").read_text())
    report = results["unknown"]
    assert report["held_out_only"] and report["artists"] == 2 and report["unknown_images"] == 12
    assert "held out" in printed and "AUROC" in printed and "ECE" in printed
    assert 0 <= report["auroc"] <= 1 and report["threshold"] == pytest.approx(unknown["threshold"])
    assert results["calibration"]["method"] == cal["method"] and results["calibration"]["top1_unchanged"]
    assert (folder / "reliability_diagram.png").is_file() and (folder / "unknown_scores.png").is_file()


def test_calibrate_refuses_data_that_does_not_give_the_recorded_split(setup, tmp_path, capsys):
    folder, paintings, others = setup
    wrong = paint(tmp_path / "wrong", ["Anna", "Bruno", "Dora"], 16)
    assert main(["calibrate", str(folder), "--data", str(wrong)]) == 1
    assert "do not match the checkpoint's label_names" in capsys.readouterr().err

    config = read_config(folder)
    config["tim"]["metrics"] = {"split": "test", "num_images": 5}  # evaluated on another split than this data gives
    (folder / "config.json").write_text(json.dumps(config))
    assert main(["calibrate", str(folder), "--data", str(paintings)]) == 1
    assert "recorded 5" in capsys.readouterr().err
    assert "calibration" not in read_config(folder)["tim"]  # nothing written


def test_calibrate_refuses_other_artists_the_model_knows(setup, tmp_path, capsys):
    folder, paintings, _ = setup
    mixed = paint(tmp_path / "mixed", ["Anna", "Dora"], 4)
    assert main(["calibrate", str(folder), "--data", str(paintings), "--unknown", str(mixed)]) == 1
    assert "artists the model knows (Anna)" in capsys.readouterr().err


def test_a_checkpoint_from_before_calibration_loads_and_answers_as_before(setup):
    folder, paintings, _ = setup
    predictor = Predictor.load(str(folder))
    assert predictor.calibration is None and predictor.unknown is None
    image = str(next((paintings / "Bruno").iterdir()))
    p = predictor.predict([image])[0]
    x = predictor.preprocess(image)[0][None]
    logits, features, _ = predictor.outputs(x)
    assert p.known and p.confidence == pytest.approx(float(logits.softmax(-1).max()), abs=1e-5)
    assert p.unknown_score == pytest.approx(1 - p.confidence, abs=1e-5)
    with torch.inference_mode():
        assert torch.allclose(predictor.model.get_classifier()(features), logits, atol=5e-2)  # bf16 CPUs: coarser


def test_a_rejected_painting_keeps_its_closest_artist(setup):
    folder, paintings, _ = setup
    config = read_config(folder)
    config["tim"]["unknown"] = {"score": "max-probability", "threshold": -1.0}  # rejects everything
    (folder / "config.json").write_text(json.dumps(config))
    p = Predictor.load(str(folder)).predict([str(next((paintings / "Carla").iterdir()))])[0]
    assert not p.known and p.artist in ARTISTS and p.top[0][0] == p.artist


def test_a_network_trained_with_outlier_exposure_keeps_a_score_of_its_own_answer(setup, capsys):
    """After --outlier-exposure the fit part of the other artists has been seen in training: a head fitted on it
    would be chosen on flattering figures, so calibrate keeps to the scores that read the network's own answer
    (the better of max-probability and entropy on that part), and says why."""
    folder, paintings, others = setup
    config = read_config(folder)
    config["tim"]["train"] = {"outlier_exposure": 0.5}
    (folder / "config.json").write_text(json.dumps(config))
    assert main(["calibrate", str(folder), "--data", str(paintings), "--unknown", str(others)]) == 0
    assert "trained with outlier exposure" in capsys.readouterr().out
    unknown = read_config(folder)["tim"]["unknown"]
    assert unknown["score"] in ("max-probability", "entropy") and "outlier exposure" in unknown["selected_by"]
    own = {r["score"]: r["auroc"] for r in unknown["candidates"] if r["score"] in ("max-probability", "entropy")}
    assert own[unknown["score"]] == max(own.values())
    assert len(unknown["candidates"]) >= 4  # the table is still measured and kept
    assert not (folder / UNKNOWN_NAME).exists()  # nothing fitted, nothing stored


def test_tim_calibrate_score_entropy_answers_with_the_entropy_of_the_calibrated_answer(setup):
    """--score entropy needs no other artists and stores no statistics; the Predictor's unknown_score is then the
    entropy of the probabilities it shows, and a painting above the threshold is "not one of my artists"."""
    folder, paintings, _ = setup
    assert main(["calibrate", str(folder), "--data", str(paintings), "--score", "entropy", "--retention", "0.5"]) == 0
    unknown = read_config(folder)["tim"]["unknown"]
    assert unknown["score"] == "entropy" and unknown["selected_by"] == "--score"
    assert not (folder / UNKNOWN_NAME).exists()

    predictor = Predictor.load(str(folder))
    answers = predictor.predict(sorted(str(p) for p in paintings.rglob("*.png")))
    for p in answers:
        probs = np.array([q for _, q in p.top])  # three artists: the top-5 holds the whole answer
        assert len(probs) == len(ARTISTS) and probs.sum() == pytest.approx(1, abs=1e-4)
        assert p.unknown_score == pytest.approx(float(-(probs * np.log(probs)).sum()), abs=1e-4)
        assert p.known == (p.unknown_score <= unknown["threshold"])
    assert {p.known for p in answers} == {True, False}  # a threshold at half the validation paintings splits them
