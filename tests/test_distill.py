"""Distillation (`--teacher`): the student is pulled towards its teachers' answers on each training painting,
and a teacher that cannot teach this run (other artists, other picture size, no such folder) is refused before any
epoch runs."""
import json
import re
import shutil

import pytest
import torch
from accelerate import Accelerator

from tim.data import prepare_data
from tim.distill import DistillationLoss, teacher_targets
from tim.errors import ConfigError
from tim.predictor import Predictor
from tim.training import train

from paintings import make_separable_folder
from test_training import tiny_config


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    data = make_separable_folder(root / "paintings")
    run = train(tiny_config(data, root / "teacher", epochs=2, evaluate_test=False, calibrate=False))
    return data, run / "best"


def test_the_loss_follows_the_teachers_by_its_weight():
    """Fitted with weight 1 a student ends on the teachers' answer, with weight 0 on the label."""
    labels = torch.tensor([0, 1, 2, 0])
    targets = torch.tensor([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.2, 0.6, 0.2]])  # disagree with all
    for weight, expected in ((1.0, targets.argmax(1)), (0.0, labels)):
        logits = torch.zeros(4, 3, requires_grad=True)
        loss = DistillationLoss(torch.nn.CrossEntropyLoss(), targets, weight, temperature=2.0)
        optimizer = torch.optim.SGD([logits], lr=1.0)
        for _ in range(100):
            optimizer.zero_grad()
            loss(logits, labels, torch.arange(4)).backward()
            optimizer.step()
        assert torch.equal(logits.argmax(1), expected), f"weight {weight}"
    # at weight 1 and temperature 1 the student's best answer is the teachers' probabilities themselves
    logits = torch.zeros(4, 3, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    for _ in range(500):
        optimizer.zero_grad()
        DistillationLoss(torch.nn.CrossEntropyLoss(), targets, 1.0, 1.0)(logits, labels, torch.arange(4)).backward()
        optimizer.step()
    torch.testing.assert_close(torch.softmax(logits.detach(), 1), targets, atol=2e-3, rtol=0)


def test_teacher_targets_are_each_teachers_own_answer_for_that_painting(teacher):
    """The soft target of training row i is what the teacher's Predictor says about painting i, averaged."""
    data, best = teacher
    cfg = tiny_config(data, data.parent / "unused")
    prepared = prepare_data(cfg.data)
    train_split = prepared.splits["train"]
    pre = {"resize_mode": cfg.data.resize_mode, "image_size": cfg.data.image_size}
    targets = teacher_targets([str(best), str(best)], train_split, prepared.artists, pre, 1.0, 5, 0, Accelerator())
    answers = Predictor.load(str(best)).predict(train_split["path"], k=3)
    expected = torch.tensor([[dict(a.top)[artist] for artist in prepared.artists] for a in answers])
    torch.testing.assert_close(targets, expected, atol=1e-4, rtol=0)


def test_a_distilled_run_trains_and_records_its_teachers(teacher, tmp_path):
    data, best = teacher
    run = train(tiny_config(data, tmp_path / "student", epochs=2, teachers=[str(best)], evaluate_test=False,
                            calibrate=False))
    recipe = json.loads((run / "best" / "config.json").read_text())["tim"]["train"]
    assert recipe["teachers"] == [str(best)] and recipe["distill_weight"] == 0.5
    assert len((run / "log.csv").read_text().splitlines()) == 3


def test_a_teacher_that_cannot_teach_this_run_is_refused_before_training(teacher, tmp_path):
    data, best = teacher
    other = tmp_path / "other"
    shutil.copytree(data / "Red_Studio", other / "Someone_Else")
    for artist in ("Blue_Period", "Green_Garden"):
        shutil.copytree(data / artist, other / artist)
    with pytest.raises(ConfigError, match=re.escape(f"--teacher {best}: it knows other artists")):
        train(tiny_config(other, tmp_path / "a", teachers=[str(best)]))
    cfg = tiny_config(data, tmp_path / "b", teachers=[str(best)])
    cfg.data.image_size = 40
    with pytest.raises(ConfigError, match="trained on pad 32 px pictures, this run uses pad 40 px"):
        train(cfg)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists(), "the run folders were never started"
    with pytest.raises(ConfigError, match="no such checkpoint folder"):
        train(tiny_config(data, tmp_path / "c", teachers=[str(tmp_path / "missing")]))
    with pytest.raises(ConfigError, match="distill_weight"):
        train(tiny_config(data, tmp_path / "d", teachers=[str(best)], distill_weight=1.5))
