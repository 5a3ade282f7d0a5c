"""Evaluation, comparison and the model table: metrics, intervals, files, distributed counting.

Checkpoints are tiny random `test_resnet` models over a generated folder of
3 artists x 12 images (32px), split 6 / 3 / 3 per artist: the test split has
9 images, deliberately not a multiple of batch x processes.
"""
import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from processes import two_cpu_processes
from tim.checkpoint import load_checkpoint, save_checkpoint
from tim.cli import main
from tim.compare import CompareError, compare
from tim.data import DataConfig, prepare_data
from tim.evaluation import evaluate_checkpoint
from tim.metrics import (
    METRIC_NAMES,
    bootstrap_intervals,
    compute_metrics,
    metrics_from_confusion,
    paired_test,
    per_artist_table,
)
from tim.modelinfo import describe, model_table

REPO = Path(__file__).resolve().parents[1]
ARTISTS = ["Anna", "Bruno", "Carla"]
TEST_IMAGES = 9
PREPROCESSING = {"resize_mode": "pad", "image_size": 32, "pad_color": [0, 0, 0]}
LOG_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_f1_macro",
               "lr_early", "lr_intermediate", "lr_final", "seconds", "images_per_second"]


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def paintings(tmp_path) -> Path:
    """3 artists x 12 noisy images around one base colour each, 40x30 (not square, so padding happens)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "paintings"
    bases = {"Anna": (200, 40, 40), "Bruno": (40, 200, 40), "Carla": (40, 40, 200)}
    for artist, base in bases.items():
        (root / artist).mkdir(parents=True)
        for i in range(12):
            noise = rng.integers(-40, 40, size=(30, 40, 3))
            pixels = np.clip(np.array(base) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / artist / f"{artist}_{i:02d}.png")
    return root


def data_recipe(source: Path, seed: int = 42) -> dict:
    return DataConfig(source=str(source), min_images=1, fractions=(0.5, 0.25, 0.25), seed=seed,
                      duplicate_distance=-1, image_size=32).to_dict()


def make_checkpoint(folder: Path, source: Path, artists=ARTISTS, seed: int = 0, split_seed: int = 42) -> Path:
    torch.manual_seed(seed)
    model = timm.create_model("test_resnet", num_classes=len(artists))
    return save_checkpoint(model, folder, artists, PREPROCESSING, extra={"data": data_recipe(source, split_seed)})


def make_run(run: Path, source: Path, seed: int = 0, split_seed: int = 42) -> Path:
    """A run folder as train.py leaves it: RUN/best and RUN/log.csv."""
    run.mkdir(parents=True)
    make_checkpoint(run / "best", source, seed=seed, split_seed=split_seed)
    with open(run / "log.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LOG_COLUMNS)
        for epoch in range(1, 4):
            writer.writerow([epoch, 1.0 / epoch, 0.5 + 0.1 * epoch, 1.1 / epoch, 0.4 + 0.1 * epoch, 0.3 + 0.1 * epoch,
                             1e-6, 1e-5, 1e-3, 2.0, 100.0])
    return run


def read_predictions(folder: Path) -> list[dict]:
    with open(folder / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def answers(folder: Path) -> list[tuple[str, str]]:
    """(file name, predicted artist) per test image: comparable across folders holding the same paintings."""
    return [(Path(r["path"]).name, r["predicted"]) for r in read_predictions(folder)]


def split_paths(source: Path) -> set[str]:
    return set(prepare_data(DataConfig.from_dict(data_recipe(source))).splits["test"]["path"])



# ---------------------------------------------------------------- metrics


def noisy_predictions(n: int, classes: int, accuracy: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    references = rng.integers(0, classes, n)
    predictions = np.where(rng.random(n) < accuracy, references, rng.integers(0, classes, n))
    return references, predictions


def test_metrics_equal_sklearn_including_never_predicted_artists():
    references = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    predictions = np.array([0, 0, 1, 1, 2, 2, 2, 0, 0, 1])  # artist 3 is never predicted: zero_division applies
    got = compute_metrics(references, predictions)
    assert got["accuracy"] == pytest.approx(accuracy_score(references, predictions))
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(references, predictions, average=average, zero_division=0)
        assert got[f"precision_{average}"] == pytest.approx(p)
        assert got[f"recall_{average}"] == pytest.approx(r)
        assert got[f"f1_{average}"] == pytest.approx(f)
    # the vectorised formulas the bootstrap uses give the same numbers, even with an artist absent from both
    from_cm = metrics_from_confusion(confusion_matrix(references, predictions, labels=range(5)))
    for name in METRIC_NAMES:
        assert from_cm[name] == pytest.approx(got[name]), name


def test_bootstrap_intervals_contain_estimate_are_seeded_and_narrow_with_data():
    references, predictions = noisy_predictions(300, 4, 0.7)
    small = bootstrap_intervals(references, predictions, 4, resamples=1000, seed=0)
    for name in METRIC_NAMES:
        assert small[name].low <= small[name].value <= small[name].high, name
        assert small[name].low < small[name].high, name
    assert bootstrap_intervals(references, predictions, 4, resamples=1000, seed=0) == small
    assert bootstrap_intervals(references, predictions, 4, resamples=1000, seed=1) != small
    # the accuracy interval has the width the binomial standard error predicts
    acc = small["accuracy"]
    expected = 2 * 1.96 * np.sqrt(acc.value * (1 - acc.value) / 300)
    assert acc.high - acc.low == pytest.approx(expected, rel=0.2)
    # ten times the images: same estimates, intervals about sqrt(10) narrower
    large = bootstrap_intervals(np.tile(references, 10), np.tile(predictions, 10), 4, resamples=1000, seed=0)
    for name in METRIC_NAMES:
        assert large[name].value == pytest.approx(small[name].value)
        assert large[name].high - large[name].low < 0.5 * (small[name].high - small[name].low), name


def test_bootstrap_handles_a_full_test_split():
    """A 5000-image, 31-artist split gives finite intervals around the point values (speed: benchmarks/bench_metrics.py)."""
    references, predictions = noisy_predictions(5000, 31, 0.7)
    intervals = bootstrap_intervals(references, predictions, 31, resamples=1000, seed=0)
    for name in METRIC_NAMES:
        assert intervals[name].low <= intervals[name].value <= intervals[name].high, name
    assert intervals["accuracy"].value == pytest.approx(0.7, abs=0.03)


def test_per_artist_table_lists_every_artist_with_sklearn_values():
    references = np.array([0, 0, 1, 1, 1])
    predictions = np.array([0, 1, 1, 1, 0])
    table = per_artist_table(references, predictions, ["Anna", "Bruno", "Carla"])
    assert [row["artist"] for row in table] == ["Anna", "Bruno", "Carla"]
    p, r, f, s = precision_recall_fscore_support(references, predictions, labels=[0, 1, 2], zero_division=0)
    for i, row in enumerate(table):
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p[i], r[i], f[i], s[i]))
    assert table[2]["support"] == 0


def test_paired_test_exact_mcnemar_and_paired_difference():
    references = np.zeros(20, dtype=int)
    a = np.zeros(20, dtype=int)  # A is always right
    b = a.copy()
    b[:6] = 1  # B is wrong on 6 images, never right where A is wrong
    result = paired_test(references, a, b, resamples=1000, seed=0)
    assert (result.only_a_correct, result.only_b_correct) == (6, 0)
    assert result.mcnemar_p == pytest.approx(2 * 0.5**6)  # exact two-sided binomial
    assert result.difference.value == pytest.approx(-0.3)
    assert result.difference.high < 0  # B is clearly worse
    same = paired_test(references, a, a)
    assert same.mcnemar_p == 1.0
    assert (same.difference.low, same.difference.value, same.difference.high) == (0.0, 0.0, 0.0)


# ---------------------------------------------------------------- tim evaluate


def test_evaluate_writes_results_predictions_and_figures(paintings, tmp_path, capsys):
    run = make_run(tmp_path / "runs" / "tiny", paintings)
    checkpoint = run / "best"
    assert main(["evaluate", str(checkpoint), "--batch-size", "4", "--resamples", "200"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "Carla" in printed

    results = json.loads((checkpoint / "eval_results.json").read_text())
    assert results["split"] == "test" and results["num_images"] == TEST_IMAGES
    assert results["data"]["source"] == str(paintings)
    assert set(results["metrics"]) == set(METRIC_NAMES)
    for m in results["metrics"].values():
        assert 0 <= m["low"] <= m["value"] <= m["high"] <= 1
    assert results["bootstrap"] == {"resamples": 200, "seed": 0, "confidence": 0.95}
    assert [r["artist"] for r in results["per_artist"]] == ARTISTS
    assert sum(r["support"] for r in results["per_artist"]) == TEST_IMAGES

    rows = read_predictions(checkpoint)
    assert list(rows[0]) == ["path", "true", "predicted", "confidence"]
    assert {r["path"] for r in rows} == split_paths(paintings)  # the test split, each image once
    assert all(r["true"] == Path(r["path"]).parent.name for r in rows)
    accuracy = np.mean([r["true"] == r["predicted"] for r in rows])
    assert results["metrics"]["accuracy"]["value"] == pytest.approx(accuracy)

    for figure in ("confusion_matrix.png", "training_curves.png"):
        with Image.open(checkpoint / figure) as img:
            assert img.format == "PNG" and min(img.size) > 200

    model, config = load_checkpoint(checkpoint)  # still a loadable checkpoint, now with its test metrics
    assert config["tim"]["metrics"]["accuracy"] == pytest.approx(accuracy)
    assert config["tim"]["metrics"]["num_images"] == TEST_IMAGES


def test_evaluate_in_bf16_measures_and_prints_its_agreement_with_fp32(paintings, tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "ckpt", paintings)
    out = tmp_path / "bf16"
    assert main(["evaluate", str(checkpoint), "--precision", "bf16", "--resamples", "100",
                 "--output-dir", str(out)]) == 0
    precision = json.loads((out / "eval_results.json").read_text())["precision"]
    assert precision["name"] == "bf16" and 0.0 <= precision["top1_agreement_with_fp32"] <= 1.0
    assert f"top-1 answer agrees with fp32 on {precision['top1_agreement_with_fp32']:.2%}" in capsys.readouterr().out
    assert "metrics" not in load_checkpoint(checkpoint)[1]["tim"]  # bf16 numbers never stand in for the model's


def test_evaluate_data_flag_moves_only_the_source(paintings, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ckpt", paintings)
    here = evaluate_checkpoint(str(checkpoint), resamples=100, output_dir=tmp_path / "here")
    moved = paintings.rename(tmp_path / "moved")
    there = evaluate_checkpoint(str(checkpoint), {"source": str(moved)}, resamples=100, output_dir=tmp_path / "there")
    assert there["data"]["source"] == str(moved)
    assert {**there["data"], "source": None} == {**here["data"], "source": None}
    assert answers(tmp_path / "here") == answers(tmp_path / "there")  # same test images, same answers
    # and `tim compare` recognises them as the same paintings
    rows = compare([tmp_path / "here", tmp_path / "there"], tmp_path / "comparison")
    assert rows[1]["mcnemar_p"] == 1.0 and rows[1]["accuracy_difference"] == 0.0


def test_evaluate_refuses_data_with_other_artists(paintings, tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "ckpt", paintings, artists=["Anna", "Bruno", "Zoe"])
    assert main(["evaluate", str(checkpoint), "--resamples", "100"]) == 1
    error = capsys.readouterr().err
    assert "Zoe" in error and "Carla" in error and "--data" in error
    assert not (checkpoint / "eval_results.json").exists()


def test_distributed_evaluation_counts_each_image_once(paintings, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ckpt", paintings)
    single = evaluate_checkpoint(str(checkpoint), batch_size=2, resamples=100, output_dir=tmp_path / "single")
    # 9 test images, 2 processes x batch 2: the last round is padded with repeats that must not count.
    command, env = two_cpu_processes("-m", "tim.cli", "evaluate", str(checkpoint), "--batch-size", "2",
                                     "--resamples", "100", "--output-dir", str(tmp_path / "distributed"))
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "distributed" / "eval_results.json").read_text())
    assert results["processes"] == 2
    assert results["num_images"] == TEST_IMAGES
    rows = read_predictions(tmp_path / "distributed")
    assert len(rows) == TEST_IMAGES and {r["path"] for r in rows} == split_paths(paintings)
    assert [r["predicted"] for r in rows] == [r["predicted"] for r in read_predictions(tmp_path / "single")]
    assert results["metrics"] == single["metrics"]


# ---------------------------------------------------------------- tim compare


def test_compare_two_runs_on_the_same_test_split(paintings, tmp_path, capsys):
    runs = [make_run(tmp_path / "runs" / name, paintings, seed=seed) for name, seed in (("first", 0), ("second", 1))]
    for run in runs:
        evaluate_checkpoint(str(run / "best"), resamples=200)
    out = tmp_path / "comparison"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| first |" in printed and "| second |" in printed

    with open(out / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["first", "second"]
    assert rows[0]["mcnemar_p"] == ""  # the reference has no test against itself
    assert 0.0 <= float(rows[1]["mcnemar_p"]) <= 1.0
    low, value, high = (float(rows[1][f"accuracy_difference{s}"]) for s in ("_low", "", "_high"))
    assert low <= value <= high
    assert value == pytest.approx(float(rows[1]["accuracy"]) - float(rows[0]["accuracy"]))
    with Image.open(out / "curves.png") as img:
        assert img.format == "PNG"


def test_compare_refuses_models_evaluated_on_different_images(paintings, tmp_path):
    same = make_run(tmp_path / "runs" / "a", paintings)
    other_split = make_run(tmp_path / "runs" / "b", paintings, split_seed=7)  # another test split
    for run in (same, other_split):
        evaluate_checkpoint(str(run / "best"), resamples=100)
    with pytest.raises(CompareError, match="different images"):
        compare([same, other_split], tmp_path / "out")
    unevaluated = make_run(tmp_path / "runs" / "c", paintings)
    with pytest.raises(CompareError, match="tim evaluate"):
        compare([same, unevaluated], tmp_path / "out")


def test_compare_common_images_uses_only_paintings_every_model_was_tested_on(paintings, tmp_path):
    """Models with different test splits (e.g. trained on 15 and on 50 artists) compare on the shared images."""
    runs = [make_run(tmp_path / "runs" / "a", paintings), make_run(tmp_path / "runs" / "b", paintings, split_seed=7)]
    answers = []
    for run in runs:
        evaluate_checkpoint(str(run / "best"), resamples=100)
        with open(run / "best" / "predictions.csv", newline="") as f:
            answers.append({Path(r["path"]).name: r for r in csv.DictReader(f)})
    common = answers[0].keys() & answers[1].keys()
    assert 0 < len(common) < len(answers[0])
    rows = compare(runs, tmp_path / "out", resamples=100, common_images=True)
    assert [r["num_images"] for r in rows] == [len(common)] * 2
    for row, answer in zip(rows, answers):
        right = sum(answer[name]["true"] == answer[name]["predicted"] for name in common)
        assert row["accuracy"] == pytest.approx(right / len(common))
        assert row["accuracy_low"] <= row["accuracy"] <= row["accuracy_high"]


def test_top5_accuracy_counts_the_true_artist_among_the_five_most_probable():
    from tim.metrics import top_k_accuracy

    probabilities = np.zeros((3, 8))
    for row, ranking in enumerate(([0, 1, 2, 3, 4, 5, 6, 7], [1, 2, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 0, 7])):
        probabilities[row, ranking] = np.linspace(1.0, 0.1, 8)  # artist 0 ranked 1st, 3rd, 7th
    truth = np.zeros(3, dtype=int)
    assert top_k_accuracy(truth, probabilities, k=1).value == pytest.approx(1 / 3)
    top5 = top_k_accuracy(truth, probabilities, k=5, resamples=200)
    assert top5.value == pytest.approx(2 / 3) and top5.low <= top5.value <= top5.high


# ---------------------------------------------------------------- tim models


def test_model_table_counts_parameters_and_flops(capsys):
    info = model_table(["test_resnet"], num_classes=3, image_size=64)[0]
    model = timm.create_model("test_resnet", num_classes=3)
    assert info.parameters == sum(p.numel() for p in model.parameters())
    assert info.gflops > 0
    assert [b.name for b in info.blocks] == [name for name, _ in model.named_children()]
    assert sum(b.parameters for b in info.blocks) == info.parameters
    assert info.blocks[-1].output_shape == "1x3"  # the classifier: one image, three artists
    assert main(["models", "test_resnet", "--num-classes", "3", "--image-size", "64", "--markdown"]) == 0
    assert "| test_resnet |" in capsys.readouterr().out


def test_flops_are_two_per_multiply_add():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False))
    info = describe(conv, image_size=8)
    multiply_adds = 8 * 8 * 8 * 3 * 3 * 3  # output pixels x output channels x kernel x input channels
    assert info.gflops * 1e9 == pytest.approx(2 * multiply_adds)
