"""Publishing to and pulling from the Hugging Face Hub, offline.

The Hub itself is replaced at tim.hub's boundary (its `HfApi`) by FakeHub, which
checks every call against the real HfApi signature, records it, and keeps the
files an `upload_folder` would send. Pulling is tested against a Hugging Face
cache folder laid out as huggingface_hub lays it out, with HF_HUB_OFFLINE=1.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import pickle
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import httpx2
import numpy as np
import pytest
import timm
import torch
from huggingface_hub import HfApi, ModelCard, constants, metadata_load
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import filter_repo_objects
from PIL import Image

import tim.hub
from tim.checkpoint import CheckpointError, save_checkpoint
from tim.hub import HUB_FILES, HubError, check_push_access, load_model, push_checkpoint

ARTISTS = ["Claude Monet", "Vincent van Gogh", "Rembrandt"]
REPO = "alice/tim-artists"
METRICS = {
    "accuracy": {"value": 0.8125, "low": 0.74, "high": 0.88},
    "precision_macro": {"value": 0.80, "low": 0.72, "high": 0.87},
    "recall_macro": {"value": 0.79, "low": 0.71, "high": 0.86},
    "f1_macro": {"value": 0.795, "low": 0.715, "high": 0.865},
    "precision_weighted": {"value": 0.81, "low": 0.73, "high": 0.88},
    "recall_weighted": {"value": 0.8125, "low": 0.74, "high": 0.88},
    "f1_weighted": {"value": 0.81, "low": 0.73, "high": 0.875},
}
DATA = {
    "source": "/home/alice/paintings", "kind": "imagefolder", "label_column": "artist",
    "drop_labels": ["Unknown Artist"], "image_size": 64, "resize_mode": "pad", "pad_color": [0, 0, 0],
    "min_images": 10, "artists": None, "fractions": [0.7, 0.1, 0.2], "seed": 42, "duplicate_distance": 8,
}


@pytest.fixture(autouse=True)
def hub_env(tmp_path, monkeypatch):
    """A private Hub cache and no token, whatever this machine has: huggingface_hub reads these at import."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-token"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    assert constants.HF_HUB_OFFLINE  # tests/conftest.py


def make_checkpoint(folder: Path, labels=ARTISTS, evaluated: bool = True, seed: int = 0):
    """A tiny random checkpoint as `tim train` + `tim evaluate` leave it; returns (folder, model)."""
    torch.manual_seed(seed)
    model = timm.create_model("test_resnet", num_classes=len(labels)).eval()
    save_checkpoint(
        model, folder, list(labels), {"resize_mode": "pad", "image_size": 64, "pad_color": [0, 0, 0]},
        extra={"data": DATA, "train": {"epochs": 12, "batch_size": 32, "lr_final": 0.001, "label_smoothing": 0.1}},
    )
    if evaluated:
        (folder / "eval_results.json").write_text(json.dumps({
            "split": "test", "num_images": 96, "data": DATA, "metrics": METRICS,
            "bootstrap": {"resamples": 1000, "seed": 0, "confidence": 0.95},
            "per_artist": [
                {"artist": a, "precision": 0.9 - i / 10, "recall": 0.8, "f1": 0.85 - i / 10, "support": 32}
                for i, a in enumerate(labels)
            ],
        }))
        Image.new("RGB", (8, 8), (200, 30, 30)).save(folder / "confusion_matrix.png")
        (folder / "predictions.csv").write_text("path,true,predicted,confidence\n/home/alice/p/1.jpg,a,a,0.9\n")
    return folder, model


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def put_in_hub_cache(repo_id: str, files: dict[str, bytes], commit: str = "a" * 40, ref: str = "main") -> Path:
    """Lay `files` out as huggingface_hub's cache does: blobs/<hash>, snapshots/<commit>/<name> -> blob, refs/<ref>."""
    repo_dir = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    for name, data in files.items():
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo_dir / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / ref).write_text(commit)
    return repo_dir / "snapshots" / commit


def logits(model, seed=1):
    torch.manual_seed(seed)
    with torch.inference_mode():
        return model.eval()(torch.randn(2, 3, 64, 64))


# ---------------------------------------------------------------- the fake Hub


def whoami_info(role: str, name: str = "alice", orgs=(), scoped=None) -> dict:
    """A /whoami-v2 answer; `scoped` is the fine-grained token's per-entity permission list."""
    access = {"displayName": "tim", "role": role}
    if role == "fineGrained":
        access["fineGrained"] = {"canReadGatedRepos": False, "global": ["discussion.write"], "scoped": scoped or []}
    return {"type": "user", "name": name, "orgs": [{"name": o} for o in orgs],
            "auth": {"type": "access_token", "accessToken": access}}


class FakeHub:
    """Replaces `tim.hub.HfApi`: checks each call against the real HfApi signature, records it, keeps uploads."""

    def __init__(self, whoami: dict | None = None, upload_error: Exception | None = None):
        self.whoami_answer = whoami
        self.upload_error = upload_error
        self.calls: list[tuple[str, dict]] = []
        self.tokens: list = []
        self.repos: dict[tuple[str, str], dict[str, bytes]] = {}

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def __call__(self, *args, **kwargs) -> "FakeApi":  # used as the HfApi class
        inspect.signature(HfApi).bind(*args, **kwargs)
        self.tokens.append(kwargs.get("token"))
        return FakeApi(self)


class FakeApi:
    def __init__(self, hub: FakeHub):
        self.hub = hub

    def _record(self, name: str, *args, **kwargs) -> dict:
        bound = inspect.signature(getattr(HfApi, name)).bind(self, *args, **kwargs)  # TypeError if HfApi would refuse
        arguments = {k: v for k, v in bound.arguments.items() if k != "self"}
        self.hub.calls.append((name, arguments))
        return arguments

    def whoami(self, *args, **kwargs):
        self._record("whoami", *args, **kwargs)
        if self.hub.whoami_answer is None:
            raise AssertionError("whoami must not be called here")
        if isinstance(self.hub.whoami_answer, Exception):
            raise self.hub.whoami_answer
        return self.hub.whoami_answer

    def create_repo(self, *args, **kwargs):
        a = self._record("create_repo", *args, **kwargs)
        return f"https://huggingface.co/{a['repo_id']}"

    def create_branch(self, *args, **kwargs):
        self._record("create_branch", *args, **kwargs)

    def upload_folder(self, *args, **kwargs):
        a = self._record("upload_folder", *args, **kwargs)
        if self.hub.upload_error is not None:
            raise self.hub.upload_error
        folder = Path(a["folder_path"])
        local = files_of(folder)
        chosen = filter_repo_objects(local, allow_patterns=a.get("allow_patterns"), ignore_patterns=a.get("ignore_patterns"))
        self.hub.repos[(a["repo_id"], a.get("revision") or "main")] = {name: local[name] for name in chosen}
        return SimpleNamespace(commit_url=f"https://huggingface.co/{a['repo_id']}/commit/{'c' * 40}")


def install(monkeypatch, hub: FakeHub) -> FakeHub:
    monkeypatch.setattr(tim.hub, "HfApi", hub)
    return hub


def cli(argv: list[str]):
    """Run `tim push|card ...` through the parser tim.hub adds (independent of other modules' commands)."""
    parser = argparse.ArgumentParser(prog="tim")
    tim.hub.add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args, args.func(args)


# ---------------------------------------------------------------- what gets published


def test_push_uploads_exactly_the_checkpoint_card_and_results_and_timm_loads_it_back(tmp_path, monkeypatch):
    folder, model = make_checkpoint(tmp_path / "best")
    hub = install(monkeypatch, FakeHub())

    url = push_checkpoint(folder, REPO)

    assert url == f"https://huggingface.co/{REPO}/commit/{'c' * 40}"
    uploaded = hub.repos[(REPO, "main")]
    # predictions.csv lists the user's own file paths: it stays local
    assert sorted(uploaded) == ["README.md", "config.json", "confusion_matrix.png", "eval_results.json",
                                "model.safetensors"]
    assert uploaded["model.safetensors"] == (folder / "model.safetensors").read_bytes()

    # what was uploaded, once in a Hub cache, loads with timm alone and with Tim
    put_in_hub_cache(REPO, uploaded)
    plain = timm.create_model(f"hf-hub:{REPO}", pretrained=True)
    assert plain.pretrained_cfg["label_names"] == ARTISTS
    assert torch.allclose(logits(plain), logits(model))
    loaded, config = load_model(REPO)
    assert config["label_names"] == ARTISTS
    assert torch.allclose(logits(loaded), logits(model))


def test_calibration_and_unknown_statistics_round_trip_through_push_and_the_hub_cache(tmp_path, monkeypatch):
    from tim.calibrate import write_into_checkpoint
    from tim.calibration import Calibration
    from tim.openset import UnknownDetector, fit_outlier_head
    from tim.predictor import Predictor

    folder, _ = make_checkpoint(tmp_path / "best")
    rng = np.random.default_rng(0)
    width = timm.create_model("test_resnet").num_features
    features = rng.normal(size=(40, width)).astype(np.float32)
    stats = fit_outlier_head(features[:30], np.arange(30) % 3, features[30:] + 2)
    write_into_checkpoint(folder, Calibration("temperature", 1.7),
                          UnknownDetector("outlier-exposure", 0.42, stats, {"retention": 0.95}))
    local = Predictor.load(str(folder))
    hub = install(monkeypatch, FakeHub())

    push_checkpoint(folder, REPO)

    uploaded = hub.repos[(REPO, "main")]
    assert "unknown.safetensors" in uploaded and "eval_results.json" in uploaded
    put_in_hub_cache(REPO, uploaded)
    pulled = Predictor.load(REPO)
    assert pulled.calibration == local.calibration and pulled.unknown.threshold == 0.42
    assert all(torch.equal(pulled.unknown.tensors[k], local.unknown.tensors[k]) for k in stats)
    torch.manual_seed(2)
    x = torch.randn(3, 3, 64, 64)
    a, b = local.answers(x), pulled.answers(x)
    assert torch.allclose(a.probabilities, b.probabilities) and torch.allclose(a.unknown_score, b.unknown_score)
    assert "Confidence is calibrated" in (folder / "README.md").read_text()


def test_card_front_matter_parses_and_model_index_holds_the_test_metrics_with_intervals(tmp_path, monkeypatch):
    folder, _ = make_checkpoint(tmp_path / "best")
    install(monkeypatch, FakeHub())
    push_checkpoint(folder, REPO)

    meta = metadata_load(folder / "README.md")
    assert meta["library_name"] == "timm"
    assert {"image-classification", "timm", "art"} <= set(meta["tags"])
    (result,) = meta["model-index"][0]["results"]
    assert result["task"]["type"] == "image-classification"
    assert result["dataset"]["split"] == "test"
    got = {(m["type"], (m.get("args") or {}).get("average")): m for m in result["metrics"]}
    assert len(got) == len(METRICS)
    for key, expected in METRICS.items():
        kind, _, average = key.partition("_")
        metric = got[(kind, average or None)]
        assert metric["value"] == expected["value"]
        interval = metric["args"]["confidence_interval"]
        assert (interval["low"], interval["high"], interval["confidence"]) == (expected["low"], expected["high"], 0.95)

    card = ModelCard.load(folder / "README.md")
    assert len(card.data.eval_results) == len(METRICS)
    text = card.text
    assert "test_resnet" in text
    assert all(f"| {a} |" in text for a in ARTISTS)  # per-artist table
    assert "| Claude Monet | 0.900 | 0.800 | 0.850 | 32 |" in text
    assert "| Accuracy | 0.812 | 0.740 – 0.880 |" in text  # value with its interval
    assert "![confusion matrix](confusion_matrix.png)" in text
    assert "**pad** (letterbox)" in text and "64×64" in text
    assert "| label_smoothing | 0.1 |" in text  # training recipe
    assert f'timm.create_model("hf-hub:{REPO}", pretrained=True)' in text
    assert "Intended use and limits" in text
    assert "/home/alice" not in str(card)  # local paths are not published


def test_card_of_an_unevaluated_checkpoint_says_so_and_claims_no_metrics(tmp_path):
    folder, _ = make_checkpoint(tmp_path / "last", evaluated=False)

    args, rc = cli(["card", str(folder)])

    assert rc == 0
    meta = metadata_load(folder / "README.md")
    assert "model-index" not in meta and meta["library_name"] == "timm"
    text = ModelCard.load(folder / "README.md").text
    assert "not evaluated" in text
    assert "confusion" not in text.lower()
    assert "hf-hub:USER/NAME" in text  # no repo known yet: a placeholder the card tells you to replace


# ---------------------------------------------------------------- the upload calls


def test_push_creates_repo_and_branch_and_uploads_in_one_commit(tmp_path, monkeypatch):
    folder, _ = make_checkpoint(tmp_path / "best")
    hub = install(monkeypatch, FakeHub())

    push_checkpoint(folder, REPO, private=True, revision="exp-lr", commit_message="Lite0, 12 epochs", token="hf_w")

    assert hub.names() == ["create_repo", "create_branch", "upload_folder"]
    assert hub.tokens == ["hf_w"]
    (_, repo), (_, branch), (_, upload) = hub.calls
    assert repo["repo_id"] == REPO and repo["private"] is True and repo["exist_ok"] is True
    assert branch["repo_id"] == REPO and branch["branch"] == "exp-lr" and branch["exist_ok"] is True
    assert upload["repo_id"] == REPO and upload["revision"] == "exp-lr"
    assert upload["commit_message"] == "Lite0, 12 epochs"
    assert Path(upload["folder_path"]).name == folder.name  # a staged copy: the card is added there, not here
    assert (REPO, "exp-lr") in hub.repos and (REPO, "main") not in hub.repos


def test_plain_push_goes_to_main_public_with_a_descriptive_message(tmp_path, monkeypatch):
    folder, _ = make_checkpoint(tmp_path / "best")
    hub = install(monkeypatch, FakeHub())

    push_checkpoint(folder, REPO)

    assert hub.names() == ["create_repo", "upload_folder"]  # no branch to create
    assert hub.calls[0][1].get("private") is not True
    upload = hub.calls[1][1]
    assert upload.get("revision") is None
    assert "test_resnet" in upload["commit_message"] and "3 artists" in upload["commit_message"]


def test_failed_upload_keeps_the_checkpoint_and_prints_the_command_that_retries_it(tmp_path, monkeypatch, capsys):
    folder, _ = make_checkpoint(tmp_path / "run 1" / "best")
    before = files_of(folder)
    monkeypatch.setenv("HF_TOKEN", "hf_write")
    request = httpx2.Request("POST", f"https://huggingface.co/api/models/{REPO}/commit/exp")
    error = HfHubHTTPError("502 Bad Gateway", response=httpx2.Response(502, request=request))
    install(monkeypatch, FakeHub(whoami=whoami_info("write"), upload_error=error))
    message = "it's the 'first' try"

    _, rc = cli(["push", str(folder), "--repo-id", REPO, "--private", "--revision", "exp", "--commit-message", message])

    assert rc == 1
    err = capsys.readouterr().err
    assert "502 Bad Gateway" in err and "intact" in err
    after = files_of(folder)
    assert after == before  # not even the card was written: the checkpoint is exactly as it was

    retry = re.search(r"^\s+(tim push .*)$", err, re.MULTILINE).group(1)
    hub = install(monkeypatch, FakeHub(whoami=whoami_info("write")))
    args, rc = cli(shlex.split(retry)[1:])
    assert rc == 0
    assert Path(args.checkpoint) == folder.resolve()
    assert (args.repo_id, args.private, args.revision, args.commit_message) == (REPO, True, "exp", message)
    assert sorted(hub.repos[(REPO, "exp")]) == sorted(set(before) - {"predictions.csv"} | {"README.md"})


# ---------------------------------------------------------------- tokens


def test_no_token_fails_before_contacting_the_hub(monkeypatch):
    hub = install(monkeypatch, FakeHub(whoami=None))

    with pytest.raises(HubError, match="no Hugging Face token") as e:
        check_push_access(REPO)

    assert "hf auth login" in str(e.value) and "HF_TOKEN" in str(e.value) and REPO in str(e.value)
    assert hub.calls == []


def test_the_token_of_hf_auth_login_is_used(monkeypatch):
    Path(constants.HF_TOKEN_PATH).write_text("hf_from_login\n")
    hub = install(monkeypatch, FakeHub(whoami=whoami_info("write")))

    assert check_push_access(REPO) == "alice"
    assert hub.tokens == ["hf_from_login"]


@pytest.mark.parametrize(
    "info, repo_id, refusal",
    [
        (whoami_info("write"), REPO, None),
        (whoami_info("write", orgs=["artlab"]), "artlab/tim", None),
        (whoami_info("write"), "bob/tim", "not a member"),
        (whoami_info("read"), REPO, "read-only"),
        (whoami_info("fineGrained", scoped=[
            {"entity": {"type": "user", "name": "alice"}, "permissions": ["repo.content.read", "repo.write"]}]),
         REPO, None),
        (whoami_info("fineGrained", scoped=[
            {"entity": {"type": "user", "name": "alice"}, "permissions": ["repo.content.read"]}]),
         REPO, "no 'repo.write'"),
        (whoami_info("fineGrained", scoped=[
            {"entity": {"type": "model", "name": REPO}, "permissions": ["repo.write"]}]),
         REPO, None),
        (whoami_info("fineGrained", scoped=[
            {"entity": {"type": "model", "name": "alice/other"}, "permissions": ["repo.write"]}]),
         REPO, "no 'repo.write'"),
        (whoami_info("fineGrained", orgs=["artlab"], scoped=[
            {"entity": {"type": "org", "name": "artlab"}, "permissions": ["repo.write"]}]),
         "artlab/tim", None),
    ],
    ids=["write", "write-org", "write-other-user", "read", "fine-user-write", "fine-read-only",
         "fine-this-repo", "fine-other-repo", "fine-org"],
)
def test_token_permissions(monkeypatch, info, repo_id, refusal):
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    hub = install(monkeypatch, FakeHub(whoami=info))

    if refusal is None:
        assert check_push_access(repo_id) == "alice"
    else:
        with pytest.raises(HubError, match=refusal) as e:
            check_push_access(repo_id)
        assert repo_id in str(e.value)
    assert hub.tokens == ["hf_env"]


def test_invalid_token_is_reported_as_such(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_revoked")
    request = httpx2.Request("GET", "https://huggingface.co/api/whoami-v2")
    install(monkeypatch, FakeHub(whoami=HfHubHTTPError("Invalid user token.", response=httpx2.Response(401, request=request))))

    with pytest.raises(HubError, match="invalid or expired"):
        check_push_access(REPO)


def test_token_check_offline_says_the_hub_is_unreachable(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_write")  # the real HfApi, with HF_HUB_OFFLINE=1

    with pytest.raises(HubError, match="cannot be reached"):
        check_push_access(REPO)


# ---------------------------------------------------------------- pulling


def test_hub_reference_loads_offline_from_the_cache_at_a_branch_or_commit(tmp_path):
    folder, model = make_checkpoint(tmp_path / "v1", evaluated=False)
    put_in_hub_cache(REPO, files_of(folder), commit="1" * 40, ref="main")
    folder2, model2 = make_checkpoint(tmp_path / "v2", labels=["Hokusai", "Hiroshige"], evaluated=False, seed=5)
    put_in_hub_cache(REPO, files_of(folder2), commit="2" * 40, ref="v2")

    main, config = load_model(REPO)
    branch, config2 = load_model(f"{REPO}@v2")
    pinned, config3 = load_model(f"{REPO}@{'2' * 40}")

    assert config["label_names"] == ARTISTS and torch.allclose(logits(main), logits(model))
    assert config2["label_names"] == config3["label_names"] == ["Hokusai", "Hiroshige"]
    assert torch.allclose(logits(branch), logits(model2)) and torch.allclose(logits(pinned), logits(model2))
    assert not main.training


def test_no_network_and_no_cache_gives_a_clear_error_naming_the_repo(monkeypatch):
    with pytest.raises(HubError) as offline:
        load_model("alice/never-downloaded@v3")
    # and with network "on" but unreachable (nothing listens on port 9)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(HubError) as unreachable:
        load_model("alice/never-downloaded")

    assert "HF_HUB_OFFLINE=1 is set" in str(offline.value)
    assert "hf download alice/never-downloaded --revision v3" in str(offline.value)
    assert "the Hub cannot be reached" in str(unreachable.value)
    for e in (offline.value, unreachable.value):
        assert "alice/never-downloaded" in str(e) and "local checkpoint folder" in str(e)
        assert e.__suppress_context__  # no chained library traceback under it


def test_a_path_that_does_not_exist_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint folder") as e:
        load_model(str(tmp_path / "runs" / "best"))
    assert not isinstance(e.value, HubError)


def test_hub_config_is_validated(tmp_path):
    folder, _ = make_checkpoint(tmp_path / "best", evaluated=False)
    files = files_of(folder)
    config = json.loads(files["config.json"])
    config["label_names"] = config["label_names"][:2]  # 2 names for 3 outputs
    files["config.json"] = json.dumps(config).encode()
    put_in_hub_cache(REPO, files)

    with pytest.raises(HubError, match="expected 3 names, one per classifier output") as e:
        load_model(REPO)
    assert REPO in str(e.value)


# ---------------------------------------------------------------- pickles


@pytest.fixture
def booby_trapped_pickle(tmp_path, monkeypatch):
    """Bytes of a pickle that creates a marker folder when unpickled; torch.load is made to fail loudly too."""
    marker = tmp_path / "UNPICKLED"

    class Trap:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    def no_torch_load(*args, **kwargs):
        raise AssertionError("torch.load must never be called on a model reference")

    monkeypatch.setattr(torch, "load", no_torch_load)
    return pickle.dumps(Trap()), marker


def test_local_folder_with_only_pickled_weights_is_refused_unopened(tmp_path, booby_trapped_pickle, monkeypatch):
    data, marker = booby_trapped_pickle
    folder, _ = make_checkpoint(tmp_path / "converted", evaluated=False)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(data)
    hub = install(monkeypatch, FakeHub())

    with pytest.raises(CheckpointError, match="only pickled weights \\(pytorch_model.bin\\)") as e:
        load_model(str(folder))
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        push_checkpoint(folder, REPO)

    assert "safetensors" in str(e.value)
    assert not marker.exists()
    assert hub.calls == []  # nothing was published


def test_hub_repo_with_only_pickled_weights_is_refused_unopened(tmp_path, booby_trapped_pickle):
    data, marker = booby_trapped_pickle
    folder, _ = make_checkpoint(tmp_path / "best", evaluated=False)
    put_in_hub_cache(REPO, {"config.json": (folder / "config.json").read_bytes(), "pytorch_model.bin": data})

    with pytest.raises(HubError, match="only pickled weights \\(pytorch_model.bin\\)") as e:
        load_model(REPO)

    assert REPO in str(e.value) and "safetensors" in str(e.value)
    assert not marker.exists()


def test_hub_file_patterns_never_select_pickles():
    """The patterns given to snapshot_download and upload_folder, through huggingface_hub's own filter."""
    repo_files = ["config.json", "model.safetensors", "README.md", "eval_results.json", "confusion_matrix.png",
                  "pytorch_model.bin", "model.pth", "weights.pt", "last.ckpt", "predictions.csv"]

    selected = sorted(filter_repo_objects(repo_files, allow_patterns=HUB_FILES))

    assert selected == ["README.md", "config.json", "confusion_matrix.png", "eval_results.json", "model.safetensors"]
    assert filter_repo_objects(["unknown.safetensors"], allow_patterns=HUB_FILES)  # the unknown-artist statistics


def test_tim_cli_parses_the_hub_commands():
    from tim.cli import build_parser

    args = build_parser("push").parse_args(["push", "runs/best", "--repo-id", "me/tim", "--private"])
    assert (args.repo_id, args.private, callable(args.func)) == ("me/tim", True, True)
    assert callable(build_parser("card").parse_args(["card", "runs/best"]).func)
