"""Nothing a user has is lost when a command is killed, the disk fills up or a folder cannot be written.

Each scenario runs the real save code in a forked child with a fault at file-system step k, for
every k (tests/faults.py): a kill -9 before each step, an ENOSPC at each write, a read-only folder.
After each, what existed before is intact (or fully replaced by the new version) and the next run
either continues or says what to do. `fault_matrix` returns how many fault points it injected.
"""
import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import timm
import torch
from accelerate import Accelerator
from huggingface_hub import constants

import faults
from paintings import COLOURS, make_separable_folder
from tim.atomic import recover_folder
from tim.checkpoint import load_checkpoint, save_checkpoint
from tim.data import DataConfig, prepare_data
from tim.errors import RunFolderError
from tim.export import export_checkpoint
from tim.hub import HubError, load_model
from tim.models import Tiers, tier_groups
from tim.training import (
    LOG_COLUMNS, STATE, Progress, TrainConfig, check_output_dir, make_optimizer, make_scheduler, restore_log,
    save_epoch, start_run,
)

ARTISTS = sorted(COLOURS)
PRE = {"resize_mode": "pad", "image_size": 32, "pad_color": [0, 0, 0]}
INJECTED = {}  # scenario -> fault points, printed at the end (pytest -s)


@pytest.fixture(params=["exchange", "rename"], ids=["atomic-swap", "rename-fallback"])
def swap(request, monkeypatch):
    """Both ways tim.atomic replaces a folder: Linux's atomic exchange, and two renames with recovery."""
    if request.param == "rename":
        monkeypatch.setenv("TIM_NO_RENAME_EXCHANGE", "1")
    return request.param


def model(seed: int):
    torch.manual_seed(seed)
    return timm.create_model("test_resnet", num_classes=3).eval()


def fault_matrix(name: str, operation, root: Path, check, kinds=("kill", "enospc")) -> int:
    """Run `operation` with each fault at each step; `check(kind, outcome)` inspects root; root is reset each time."""
    backup = root.with_name(root.name + "-backup")
    if not backup.exists():
        prepare_backup(root)
    steps = faults.steps(operation, root)
    faults.restore(backup, root)
    points = 0
    for kind in kinds:
        for k in range(1, len(steps) + 2 if kind == "kill" else len(steps) + 1):  # kill: also after the last step
            if kind != "kill" and not faults.is_write(steps[k - 1]):
                continue
            outcome = faults.run(operation, root, kind, at=k)
            where = f"{kind} at step {k}/{len(steps)} ({steps[k - 1] if k <= len(steps) else 'after the last'})"
            check(kind, outcome, where)
            faults.restore(backup, root)
            points += 1
            INJECTED[f"{name}, {kind}"] = INJECTED.get(f"{name}, {kind}", 0) + 1
    return points


@pytest.fixture
def work(tmp_path):
    root = tmp_path / "work"
    root.mkdir()
    return root


def prepare_backup(root: Path) -> None:
    shutil.copytree(root, root.with_name(root.name + "-backup"), symlinks=True)


# ---------------------------------------------------------------- a checkpoint


def test_saving_a_checkpoint_over_an_old_one_never_loses_both(work, swap):
    folder = work / "best"
    save_checkpoint(model(0), folder, ARTISTS, PRE, {"epoch": 1})
    old, new = model(0).fc.weight, model(1).fc.weight
    prepare_backup(work)

    def check(kind, outcome, where):
        if kind != "kill":
            assert "no space left" in outcome["message"], (where, outcome)
        recover_folder(folder)  # what the next save, load or --resume does first
        loaded, config = load_checkpoint(folder)
        weights = loaded.fc.weight
        assert torch.equal(weights, old) or torch.equal(weights, new), where
        if kind != "kill" and outcome["error"]:
            assert torch.equal(weights, old) and config["tim"]["epoch"] == 1, where
            assert not [p.name for p in work.iterdir() if p.name.startswith(".")], f"leftovers after {where}"

    points = fault_matrix(f"checkpoint ({swap})", lambda: save_checkpoint(model(1), folder, ARTISTS, PRE, {"epoch": 2}),
                          work, check)
    assert points >= 8


def test_a_read_only_folder_keeps_the_checkpoint_and_says_so(work):
    folder = work / "best"
    save_checkpoint(model(0), folder, ARTISTS, PRE)
    before = faults.snapshot(work)
    outcome = faults.run(lambda: save_checkpoint(model(1), folder, ARTISTS, PRE), work, "erofs", at=1)
    assert "read-only" in outcome["message"] and str(work) in outcome["message"]
    assert faults.snapshot(work) == before


# ---------------------------------------------------------------- an export


@pytest.fixture
def exportable(tmp_path, work):
    data = make_separable_folder(tmp_path / "paintings")
    cfg = DataConfig(source=str(data), image_size=32, min_images=1, duplicate_distance=-1, num_proc=1,
                     cache_dir=str(tmp_path / "cache"))
    prepare_data(cfg)  # the cache is built once; the export only reads it
    source = save_checkpoint(model(0), work / "best", ARTISTS, PRE, {"data": cfg.to_dict()})
    export_checkpoint(str(source), work / "bundled")  # an earlier export of other weights...
    save_checkpoint(model(1), source, ARTISTS, PRE, {"data": cfg.to_dict()})  # ...than the checkpoint has now
    return source, work / "bundled"


def test_export_over_an_existing_copy_keeps_the_old_or_the_checked_new_one(exportable, work, swap):
    source, out = exportable
    source_files, old = faults.snapshot(source), faults.snapshot(out)
    prepare_backup(work)
    export = lambda: export_checkpoint(str(source), out, overwrite=True)  # noqa: E731
    outcome = faults.run(export, work, None)
    new = faults.snapshot(out)
    assert new != old and outcome["error"] is None
    faults.restore(work.with_name("work-backup"), work)

    def check(kind, outcome, where):
        if kind != "kill":
            assert "no space left" in outcome["message"], (where, outcome)
        load_model(str(out))  # loads (after putting back a copy set aside by an interrupted swap)
        assert faults.snapshot(out) in (old, new), where
        assert faults.snapshot(source) == source_files, where
        if kind != "kill" and outcome["error"]:
            assert faults.snapshot(out) == old, where

    assert fault_matrix(f"export ({swap})", export, work, check) >= 10


def test_export_refuses_an_existing_folder_and_a_failed_check_leaves_it(exportable, work):
    source, out = exportable
    old = faults.snapshot(out)
    outcome = faults.run(lambda: export_checkpoint(str(source), out), work, None)
    assert "already exists" in outcome["message"] and "--overwrite" in outcome["message"]
    outcome = faults.run(lambda: export_checkpoint(str(source), out, min_agreement=1.01, overwrite=True), work, None)
    assert "agrees with" in outcome["message"]
    outcome = faults.run(lambda: export_checkpoint(str(source), out, overwrite=True), work, "erofs", at=1)
    assert "read-only" in outcome["message"]
    assert faults.snapshot(out) == old
    assert not [p.name for p in work.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- the training state


def row(epoch: int) -> dict:
    return {c: epoch if c == "epoch" else 0.5 for c in LOG_COLUMNS}


@pytest.fixture
def run_parts(work):
    """An Accelerate run as train() sets it up (tiny model, no data), one epoch saved in work/run."""
    cfg = TrainConfig(model="test_resnet", pretrained="none", output_dir=str(work / "run"), scheduler="cosine",
                      data=DataConfig(source="x"))
    accelerator = Accelerator(cpu=True)
    net = model(0)
    optimizer = make_optimizer(cfg, tier_groups(net, Tiers()))
    net, optimizer = accelerator.prepare(net, optimizer)
    progress = Progress()
    accelerator.register_for_checkpointing(make_scheduler(cfg, optimizer, 4), progress)
    out = Path(cfg.output_dir)
    start_run(out, cfg, overwrite=False)

    def save(epoch: int, improved: bool = True):
        progress.epoch = epoch
        save_epoch(accelerator, net, out, row(epoch), improved, ARTISTS, PRE, {"epoch": epoch})

    save(1)
    return accelerator, progress, out, save


def logged_epochs(path: Path) -> list[int]:
    return [int(r["epoch"]) for r in csv.DictReader(open(path))]


def test_a_kill_or_full_disk_while_saving_an_epoch_never_loses_or_repeats_a_log_row(run_parts, work, swap):
    accelerator, progress, out, save = run_parts
    prepare_backup(work)

    def check(kind, outcome, where):
        if kind != "kill":
            assert "no space left" in outcome["message"], (where, outcome)
        check_output_dir(out, resume=True, overwrite=False)  # what --resume does before anything else
        accelerator.load_state(str(out / STATE))
        restore_log(out)
        epoch = progress.epoch
        assert epoch in (1, 2), where
        assert logged_epochs(out / "log.csv") == list(range(1, epoch + 1)), where  # every saved epoch, once
        assert logged_epochs(out / STATE / "log.csv") == list(range(1, epoch + 1)), where
        last = json.loads((out / "last" / "config.json").read_text())["tim"]["epoch"]
        assert last in (epoch, epoch + 1), where  # last/ is never behind the state
        load_checkpoint(out / "last")
        load_checkpoint(out / "best")

    assert fault_matrix(f"training epoch ({swap})", lambda: save(2), work, check) >= 20


def test_a_run_saved_by_an_older_tim_resumes_without_a_repeated_row(run_parts):
    """Before, log.csv was appended outside the state: a kill in between left a row for an unsaved epoch."""
    accelerator, progress, out, save = run_parts
    (out / STATE / "log.csv").unlink()
    with open(out / "log.csv", "a", newline="") as f:
        csv.DictWriter(f, LOG_COLUMNS).writerow(row(2))  # epoch 2 logged, then killed before its state
    check_output_dir(out, resume=True, overwrite=False)
    accelerator.load_state(str(out / STATE))
    restore_log(out, progress.epoch)
    assert logged_epochs(out / "log.csv") == [1]
    save(2)
    save(3)
    assert logged_epochs(out / "log.csv") == logged_epochs(out / STATE / "log.csv") == [1, 2, 3]


def test_a_read_only_run_folder_stops_training_with_the_last_epoch_intact(run_parts, work):
    accelerator, progress, out, save = run_parts
    before = faults.snapshot(out)
    outcome = faults.run(lambda: save(2), work, "erofs", at=1)
    assert "read-only" in outcome["message"]
    assert faults.snapshot(out) == before


def test_an_existing_run_is_neither_overwritten_nor_resumed_by_mistake(run_parts, work):
    _, _, out, _ = run_parts
    before = faults.snapshot(out)
    with pytest.raises(RunFolderError, match="already holds a run.*--resume.*--overwrite"):
        check_output_dir(out, resume=False, overwrite=False)
    with pytest.raises(RunFolderError, match="contradict"):
        check_output_dir(out, resume=True, overwrite=True)
    with pytest.raises(RunFolderError, match="nothing to resume"):
        check_output_dir(work / "fresh", resume=True, overwrite=False)
    assert faults.snapshot(out) == before
    check_output_dir(out, resume=True, overwrite=False)
    check_output_dir(out, resume=False, overwrite=True)


# ---------------------------------------------------------------- the Hub cache


def test_an_interrupted_download_in_the_hub_cache_says_how_to_finish_it(tmp_path, monkeypatch):
    """huggingface_hub writes blobs/<sha>.incomplete while downloading; offline, the snapshot lacks the weights."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    folder = save_checkpoint(model(0), tmp_path / "best", ARTISTS, PRE)
    repo = Path(constants.HF_HUB_CACHE) / "models--alice--tim"
    commit = "a" * 40
    config = (folder / "config.json").read_bytes()
    blob = repo / "blobs" / hashlib.sha256(config).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(config)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").symlink_to(os.path.relpath(blob, repo / "snapshots" / commit))
    weights = (folder / "model.safetensors").read_bytes()
    (repo / "blobs" / (hashlib.sha256(weights).hexdigest() + ".incomplete")).write_bytes(weights[:100])
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    cached = faults.snapshot(repo)

    with pytest.raises(HubError, match="interrupted.*hf download alice/tim") as e:
        load_model("alice/tim")
    assert "pickle" not in str(e.value)
    assert faults.snapshot(repo) == cached  # the partial download is kept, so it can resume


def test_report_the_fault_points():
    """Printed with `pytest -s`: how many faults the scenarios above injected."""
    if INJECTED:
        print("\nfault points injected:", json.dumps(INJECTED, indent=1), "total", sum(INJECTED.values()))
