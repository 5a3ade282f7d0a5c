"""Every command answers a user error with one `error: ...` line on stderr and exit status 1, never a traceback.

Each case is what a person could really type: a typo in an option, a missing folder, a run folder
that already holds a run, data with one artist. Option errors come before any data is read.
"""
import json
import runpy
import sys
from pathlib import Path

import pytest
import timm

import tim.training
from paintings import make_separable_folder
from tim.checkpoint import save_checkpoint
from tim.cli import main as tim_main
from tim.hub import HubError

REPO = Path(__file__).resolve().parents[1]
ARTISTS = ["Blue_Period", "Green_Garden", "Red_Studio"]
PRE = {"resize_mode": "pad", "image_size": 32, "pad_color": [0, 0, 0]}
CASES_RUN: dict[str, int] = {}


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A working folder with paintings, a checkpoint without a data recipe, a run folder and some odd files."""
    monkeypatch.chdir(tmp_path)
    make_separable_folder(tmp_path / "paintings", per_artist=4)
    (tmp_path / "one-artist" / "Solo").mkdir(parents=True)
    for i, png in enumerate((tmp_path / "paintings" / "Blue_Period").iterdir()):
        (tmp_path / "one-artist" / "Solo" / f"{i}.png").write_bytes(png.read_bytes())
    torch_model = timm.create_model("test_resnet", num_classes=3)
    save_checkpoint(torch_model, tmp_path / "runs" / "best", ARTISTS, PRE)
    (tmp_path / "runs" / "log.csv").write_text("epoch\n1\n")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"never unpickled")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.yaml").write_text("- a list\n- not settings\n")
    (tmp_path / "typo.yaml").write_text("epoch: 3\n")
    (tmp_path / "crop.yaml").write_text("data:\n  resize_mode: crop\n")
    return tmp_path


def train_args(*extra, data="paintings", out="new-run"):
    return ["--model", "test_resnet", "--pretrained", "none", "--data", data, "--output-dir", out,
            "--image-size", "32", "--min-images", "1", "--duplicate-distance", "-1", "--num-proc", "1",
            "--epochs", "1", "--batch-size", "4", "--num-workers", "0", "--no-evaluate", *extra]


TRAIN_OPTION_CASES = {  # flags -> what the message must say; none of these may read the data
    "loss as the metric": (["--early-stopping-metric", "loss"], "early_stopping_metric.*accuracy or f1_macro"),
    "a typo in the metric": (["--early-stopping-metric", "acc"], "'acc'.*accuracy, f1_macro"),
    "an unknown optimizer": (["--optimizer", "sgd"], "--optimizer.*'sgd'.*adam, adamw"),
    "an unknown scheduler": (["--scheduler", "step"], "--scheduler.*plateau, cosine, none"),
    "unknown class weights": (["--class-weights", "inverse"], "--class-weights.*none, inverse_sqrt"),
    "unknown augmentation": (["--augment", "heavy"], "--augment.*reference, strong"),
    "unknown mixed precision": (["--mixed-precision", "fp8"], "--mixed-precision.*no, fp16, bf16"),
    "an unknown architecture": (["--model", "resnet_51"], "--model.*'resnet_51'.*timm"),
    "pickled pretrained weights": (["--pretrained", "w.pth"], "--pretrained.*safetensors"),
    "missing pretrained weights": (["--pretrained", "w.safetensors"], "no such .safetensors file"),
    "missing unknown-artist folder": (["--unknown", "other-artistz"], "one sub-folder per artist"),
    "zero epochs": (["--epochs", "0"], "--epochs.*>= 1"),
    "a negative learning rate": (["--lr-final", "-1"], "--lr-final.*>= 0"),
    "label smoothing of 1": (["--label-smoothing", "1"], "--label-smoothing"),
    "fractions not summing to 1": (["--fractions", "0.5", "0.5", "0.5"], "--fractions.*sum to 1"),
    "a misspelt config setting": (["--config", "typo.yaml"], "unknown training settings \\['epoch'\\]"),
    "a bad resize mode in a config": (["--config", "crop.yaml"], "--resize-mode.*pad, stretch"),
    "push without a repo id": (["--push-to-hub"], "--hub-model-id"),
    "a missing config file": (["--config", "nope.yaml"], "--config nope.yaml: no such file"),
    "a config that is a list": (["--config", "bad.yaml"], "bad.yaml: expected settings"),
    "resume and overwrite": (["--resume", "--overwrite"], "contradict"),
    "resume with nothing saved": (["--resume"], "nothing to resume in new-run"),
}


def run_cli(argv, capsys, label):
    """`tim ARGV` in-process: (exit status, the stderr line)."""
    rc = tim_main(argv)
    err = capsys.readouterr().err
    CASES_RUN[label] = CASES_RUN.get(label, 0) + 1
    return rc, err


def assert_one_line_error(rc, err, pattern):
    """Exit 1; one `error:` line (after any progress bars; a Hub error adds the retry command below it)."""
    import re

    lines = [line.strip("\r") for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert rc == 1, (rc, err)
    assert len(errors) == 1, err
    assert "Traceback" not in err, err
    assert re.search(pattern, "\n".join(lines[errors[0]:])), (pattern, err)


@pytest.mark.parametrize("case", sorted(TRAIN_OPTION_CASES))
@pytest.mark.parametrize("entry", ["tim train", "train.py"])
def test_train_refuses_a_bad_option_before_reading_any_data(case, entry, place, capsys, monkeypatch):
    flags, pattern = TRAIN_OPTION_CASES[case]
    monkeypatch.setattr(tim.training, "prepare_data", lambda cfg: pytest.fail("data read before the check"))
    argv = train_args(*flags)
    if entry == "tim train":
        rc, err = run_cli(["train", *argv], capsys, "train")
    else:
        from tim.train_cli import main

        rc, err = main(argv), capsys.readouterr().err
        CASES_RUN["train.py"] = CASES_RUN.get("train.py", 0) + 1
    assert_one_line_error(rc, err, pattern)
    assert not (place / "new-run").exists()


def test_train_reports_bad_data_and_an_existing_run_in_one_line(place, capsys):
    before = (place / "runs" / "log.csv").read_bytes()
    for flags, pattern in [
        (train_args(data="missing-folder"), "missing-folder"),
        (train_args(data="one-artist"), "Solo"),  # one artist cannot make a classifier
        (train_args(data="empty"), "no images"),
        (train_args(out="runs"), "runs already holds a run.*--resume.*--overwrite"),
    ]:
        rc, err = run_cli(["train", *flags], capsys, "train")
        assert_one_line_error(rc, err, pattern)
    assert (place / "runs" / "log.csv").read_bytes() == before
    assert (place / "runs" / "best" / "model.safetensors").is_file()


def test_a_failed_push_after_training_exits_1_keeps_the_run_and_says_how_to_retry(place, capsys, monkeypatch):
    import tim.hub

    monkeypatch.setattr(tim.hub, "check_push_access", lambda repo_id, token=None: "alice")

    def refuse(folder, repo_id, **kwargs):
        raise HubError(f"pushing {folder} to {repo_id} failed: 502\nThe local checkpoint is intact. Retry with:\n"
                       f"  tim push {folder} --repo-id {repo_id}")

    monkeypatch.setattr(tim.hub, "push_checkpoint", refuse)
    rc, err = run_cli(["train", *train_args("--push-to-hub", "--hub-model-id", "alice/tim", out="runs",
                                            data="paintings"), "--overwrite"], capsys, "train")
    assert_one_line_error(rc, err, "error: training finished and runs/best is saved, but pushing")
    assert "tim push runs/best --repo-id alice/tim" in err and "Traceback" not in err
    assert [line.split(",")[0] for line in (place / "runs" / "log.csv").read_text().splitlines()] == ["epoch", "1"]
    assert (place / "runs" / "best" / "model.safetensors").is_file()


TIM_CASES = {
    "evaluate": [
        (["evaluate", "nowhere"], "'nowhere': no such checkpoint folder"),
        (["evaluate", "runs/bset"], "runs/bset.*no such checkpoint folder.*runs/ exists here"),
        (["evaluate", "runs/best"], "no data recipe"),
        (["evaluate", "pickled"], "only pickled weights"),
        (["evaluate", "broken"], "broken: no model.safetensors"),
    ],
    "predict": [
        (["predict", "paintings", "--model", "runs/bset", "--out", "p.csv"], "runs/bset.*no such checkpoint"),
        (["predict", "paintings", "--model", "pickled", "--out", "p.csv"], "only pickled weights"),
        (["predict", "empty", "--model", "runs/best", "--out", "p.csv"], "no image files in empty"),
    ],
    "export": [
        (["export", "runs/best", "runs"], "runs already exists.*--overwrite"),
        (["export", "nowhere", "out"], "'nowhere': no such checkpoint folder"),
        (["export", "runs/best", "out"], "no data recipe"),
    ],
    "push": [
        (["push", "nowhere", "--repo-id", "alice/tim"], "nowhere: no config.json"),
        (["push", "runs/best", "--repo-id", "alice/tim"], "no Hugging Face token"),
    ],
    "card": [
        (["card", "nowhere"], "nowhere: no config.json"),
        (["card", "broken"], "not valid JSON"),
    ],
    "compare": [
        (["compare", "runs"], "two or more"),
        (["compare", "runs", "nowhere"], "runs: no eval_results.json.*tim evaluate runs/best"),
    ],
    "data": [
        (["data", "inspect", "missing-folder"], "missing-folder"),
        (["data", "prepare", "one-artist", "--min-images", "1"], "Solo"),
    ],
    "models": [
        (["models", "resnet_51"], "not timm models"),
    ],
}


@pytest.mark.parametrize("command", sorted(TIM_CASES))
def test_every_tim_command_answers_user_errors_in_one_line(command, place, capsys, monkeypatch):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(place / "no-token"))
    for argv, pattern in TIM_CASES[command]:
        before = sorted(p.relative_to(place).as_posix() for p in place.rglob("*"))
        rc, err = run_cli(argv, capsys, command)
        assert_one_line_error(rc, err, pattern)
        after = sorted(p.relative_to(place).as_posix() for p in place.rglob("*"))
        assert after == before or command == "data", f"{argv} changed files"  # `tim data` only fills its cache


def test_app_answers_user_errors_in_one_line(place, capsys, monkeypatch):
    from tim.app import main

    monkeypatch.setattr("tim.app.TimApp.launch", lambda *a, **k: pytest.fail("the app started"))
    for argv, pattern in [
        (["--models-dir", "no-models"], "--models-dir no-models: no such folder"),
        (["--model", "./runs/bset"], "--model ./runs/bset: no such checkpoint folder"),
        (["--model", "runs/bset"], "--model runs/bset: no such checkpoint folder"),
        (["--max-files", "0"], "--max-files 0"),
    ]:
        rc = main(argv)
        CASES_RUN["app.py"] = CASES_RUN.get("app.py", 0) + 1
        assert_one_line_error(rc, capsys.readouterr().err, pattern)


def test_deploy_answers_user_errors_in_one_line_and_deletes_nothing(place, capsys, monkeypatch):
    deploy = runpy.run_path(str(REPO / "space" / "deploy.py"))["main"]
    (place / "mine").mkdir()
    (place / "mine" / "notes.txt").write_text("keep me")
    for argv, pattern in [
        (["me/space", "--stage-only", "mine"], "mine: it already exists and was not staged"),
        (["me/space", "--stage-only", str(REPO)], "already exists"),
        (["me/space", "--model", "a/b", "--model", "a/b", "--stage-only", "new"], "the same model is named twice"),
        (["me/space"], "deploying to the Space me/space failed"),  # offline (tests/conftest.py)
    ]:
        rc = deploy(argv)
        CASES_RUN["space/deploy.py"] = CASES_RUN.get("space/deploy.py", 0) + 1
        assert_one_line_error(rc, capsys.readouterr().err, pattern)
    assert (place / "mine" / "notes.txt").read_text() == "keep me"
    assert (REPO / "tim" / "__init__.py").is_file()
    assert deploy(["me/space", "--stage-only", "staged"]) == 0
    assert deploy(["me/space", "--stage-only", "staged"]) == 0  # a folder it staged itself is replaced


def test_report_the_cases_per_command():
    """Printed with `pytest -s`: how many user-error cases each command was driven through."""
    if CASES_RUN:
        print("\nuser-error cases per command:", json.dumps(CASES_RUN, sort_keys=True))


def test_usage_errors_exit_2_with_argparse_usage(capsys):
    with pytest.raises(SystemExit) as e:
        tim_main(["train", "--epochs", "many"])
    assert e.value.code == 2 and "invalid int value" in capsys.readouterr().err
    assert sys.modules["tim.cli"]


def test_two_model_folders_with_one_name_both_stay_in_the_app(place):
    from tim.catalog import ModelCatalog

    for run in ("a", "b"):
        save_checkpoint(timm.create_model("test_resnet", num_classes=3), place / run / "best", ARTISTS, PRE)
    catalog = ModelCatalog.discover(None, ["a/best", "b/best", "a/best"])
    local = [e for e in catalog.entries.values() if e.source == "local"]
    assert [e.name for e in local] == ["a/best", "b/best"]  # told apart; the repeated a/best is listed once
    assert len({e.key for e in local}) == 2
    assert [label for label, _ in catalog.choices()][-2:][0].startswith("a/best")
