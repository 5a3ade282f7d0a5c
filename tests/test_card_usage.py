"""The model card's "How to use" blocks run as written (tim predict, Tim's Python API, timm, transformers) on a
checkpoint in the local Hub cache, and name the same artist."""
import csv
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image

from tim.card import write_card
from tim.checkpoint import save_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_ID = "tim-tests/tiny-painter"
ARTISTS = ["Claude_Monet", "Paul_Klee", "Rembrandt"]


def code_blocks(card: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block of the card's "How to use" section."""
    usage = card.split("## How to use", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", usage, flags=re.S)


def put_in_hub_cache(cache: Path, folder: Path, commit: str = "c" * 40) -> None:
    """The checkpoint's files laid out as huggingface_hub caches a download, so `REPO_ID` resolves offline."""
    repo_dir = cache / ("models--" + REPO_ID.replace("/", "--"))
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):  # an ensemble's member folders too
        data = path.read_bytes()
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo_dir / "snapshots" / commit / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)


def tiny_checkpoint(folder: Path, resize_mode: str) -> Path:
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", num_classes=len(ARTISTS))
    with torch.no_grad():  # a clear winner, so the three readers' rounding cannot swap the top two
        model.classifier.bias.copy_(torch.tensor([0.0, 6.0, 0.0]))
    folder = save_checkpoint(model, folder, ARTISTS, {"resize_mode": resize_mode, "image_size": 48,
                                                      "pad_color": [0, 0, 0]})
    write_card(folder, repo_id=REPO_ID)
    return folder


@pytest.fixture
def card_and_place(tmp_path):
    """A letterboxing checkpoint (its timm block has one more line than a stretching one's) in the Hub cache."""
    folder = tiny_checkpoint(tmp_path / "best", "pad")
    put_in_hub_cache(tmp_path / "hub-cache", folder)
    work = tmp_path / "work"
    work.mkdir()
    Image.radial_gradient("L").convert("RGB").resize((90, 60)).save(work / "painting.jpg")
    return (folder / "README.md").read_text(), work


def run_block(language: str, code: str, work: Path) -> str:
    env = {**os.environ, "HF_HUB_CACHE": str(work.parent / "hub-cache"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO_ROOT), "TIM_ENGINE": "eager"}
    if language == "bash":  # the `tim` command is this checkout's `python -m tim`
        code = re.sub(r"^tim ", f"{sys.executable} -m tim ", code, flags=re.M)
        command = ["bash", "-e", "-c", code]
    else:
        command = [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{language} block failed:\n{code}\n{done.stderr[-3000:]}"
    return done.stdout


def test_each_usage_block_runs_as_written_and_names_the_same_artist(card_and_place):
    card, work = card_and_place
    blocks = code_blocks(card)
    assert [lang for lang, _ in blocks] == ["bash", "python", "python", "python"]
    assert "tim predict" in blocks[0][1] and "timm.create_model" in blocks[2][1] and "pipeline(" in blocks[3][1]
    outputs = [run_block(lang, code, work) for lang, code in blocks]
    with open(work / "answers.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    artist = row["artist"]
    assert artist in ARTISTS and row["error"] == ""
    assert f"artist='{artist}'" in outputs[1]  # the Prediction Tim's API prints
    assert outputs[2].split()[0] == artist  # timm
    assert f"'label': '{artist}'" in outputs[3].split("}")[0]  # transformers' best answer comes first


def test_a_stretching_checkpoints_timm_block_leaves_the_squaring_to_timm(tmp_path):
    card = (tiny_checkpoint(tmp_path / "best", "stretch") / "README.md").read_text()
    timm_block = code_blocks(card)[2][1]
    assert "ImageOps" not in timm_block and "create_transform" in timm_block  # pretrained_cfg squashes (crop_mode)
