"""The CPU engine: the model's own answers, built once and cached by key, never trusted blindly, eager when it fails."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from app_helpers import jpeg_bytes, make_checkpoint, picture

from tim import engine as engines
from tim.models import texture_size
from tim.predictor import Predictor


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "effnet", "test_efficientnet", image_size=64)


@pytest.fixture(scope="module")
def built(checkpoint) -> bytes:
    """The checkpoint's engine, exported once for the module; tests that only need *an* export reuse its bytes."""
    Predictor.load(str(checkpoint), engine="auto").engine  # noqa: B018
    [path] = sorted(checkpoint.rglob("*.onnx"))
    return path.read_bytes()


def batch(predictor: Predictor, n: int = 5) -> torch.Tensor:
    return torch.stack([predictor.preprocess(jpeg_bytes(picture(90, 60 + 10 * s, seed=s)))[0] for s in range(n)])


def engine_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.onnx"))


def test_engine_gives_the_models_logits_features_and_texture_and_is_cached_beside_the_checkpoint(checkpoint, built,
                                                                                           monkeypatch):
    fast = Predictor.load(str(checkpoint), engine="auto")
    eager = Predictor.load(str(checkpoint), engine="eager")
    x = batch(fast)
    logits, features, texture = fast.outputs(x)
    assert fast.engine is not None and eager.engine is None
    want_logits, want_features, want_texture = eager.outputs(x)
    model = eager.model
    with torch.inference_mode():  # the contract: features before the classifier, logits from them
        ref_features = model.forward_head(model.forward_features(x), pre_logits=True)
        assert torch.allclose(model.get_classifier()(ref_features), model(x), atol=1e-5)
    assert logits.shape == (5, 5) and features.shape == ref_features.shape
    assert torch.allclose(logits, want_logits, atol=1e-4) and torch.allclose(features, ref_features, atol=1e-4)
    assert torch.equal(logits.argmax(1), want_logits.argmax(1))
    assert texture.shape == (5, texture_size(model)) and texture.shape[1] > 0  # what "not a painting" also reads
    assert torch.allclose(texture, want_texture, atol=1e-4)
    assert torch.allclose(fast.probabilities(x), want_logits.softmax(-1), atol=1e-5)
    [cached] = engine_files(checkpoint)
    assert cached.parent == checkpoint / engines.ENGINE_DIR

    def no_export(*_args):
        raise AssertionError("the cached engine should have been used")

    monkeypatch.setattr(engines, "export_onnx", no_export)
    again = Predictor.load(str(checkpoint), engine="auto")
    assert again.engine is not None and torch.allclose(again.outputs(x).logits, logits)


def test_a_model_without_a_local_folder_gets_its_engine_in_the_tim_cache(checkpoint, built, tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "export_onnx", lambda *_args: built)  # the same weights: the same graph
    local = Predictor.load(str(checkpoint), engine="eager")
    hub_like = Predictor(local.model, local.config, engine="auto")  # e.g. a Hub download: never written into
    assert hub_like.engine is not None
    assert engine_files(tmp_path / "tim-cache" / "engines")


def test_an_engine_file_tim_did_not_build_for_these_weights_is_not_trusted(checkpoint, built, tmp_path, monkeypatch,
                                                                          capsys):
    other = make_checkpoint(tmp_path / "other", "test_efficientnet", image_size=64, seed=1)
    Predictor.load(str(other), engine="auto").engine  # noqa: B018 - builds other's engine
    [foreign] = engine_files(other)
    monkeypatch.setattr(engines, "export_onnx", lambda *_args: built)  # the rebuild below: this model's graph
    copy = tmp_path / "copy"
    shutil.copytree(checkpoint, copy, ignore=shutil.ignore_patterns(engines.ENGINE_DIR))
    eager = Predictor.load(str(copy), engine="eager")
    key = engines.engine_folders(copy)[0]
    # someone else's engine under this model's key (a file from elsewhere, a stale build, a tampered one)
    predictor = Predictor.load(str(copy), engine="auto")
    name = f"{engines.weights_sha256(predictor.model)[:32]}-{engines.build_tag('test_efficientnet', 64)}.onnx"
    key.mkdir(parents=True)
    shutil.copy(foreign, key / name)
    x = batch(predictor)
    assert torch.allclose(predictor.outputs(x).logits, eager.outputs(x).logits, atol=1e-4)
    assert "ignoring engine file" in capsys.readouterr().err
    assert (key / name).read_bytes() != foreign.read_bytes()  # rebuilt from this model and put in its place


def test_when_the_engine_cannot_be_built_predictions_fall_back_to_pytorch_with_one_line(checkpoint, monkeypatch,
                                                                                        capsys):
    def broken(*_args):
        raise RuntimeError("exporter exploded\nwith a long traceback-like story")

    monkeypatch.setattr(engines, "export_onnx", broken)
    eager = Predictor.load(str(checkpoint), engine="eager")
    predictor = Predictor(eager.model, eager.config, engine="auto")  # no folder: nothing cached to find
    x = batch(predictor)
    assert torch.allclose(predictor.probabilities(x), eager.probabilities(x))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0] == "preparing the fast CPU engine for test_efficientnet, once, ~10 s"  # no folder: arch
    assert "exporter exploded" in err[1] and "using eager PyTorch" in err[1]


def test_bf16_only_when_asked_and_then_without_the_engine(checkpoint):
    default = Predictor.load(str(checkpoint), engine="auto")
    bf16 = Predictor.load(str(checkpoint), engine="auto", precision="bf16")
    assert default.precision == "fp32" and bf16.engine is None
    x = batch(bf16)
    assert torch.allclose(bf16.probabilities(x), default.probabilities(x), atol=0.05)
    with pytest.raises(ValueError, match="precision"):
        Predictor.load(str(checkpoint), precision="fp16")


def test_building_an_engine_says_so_in_one_line_and_a_cached_one_says_nothing(checkpoint, built, tmp_path,
                                                                             monkeypatch, capsys):
    fresh = tmp_path / "fresh"
    shutil.copytree(checkpoint, fresh, ignore=shutil.ignore_patterns(engines.ENGINE_DIR))
    capsys.readouterr()
    assert Predictor.load(str(fresh), engine="auto").engine is not None
    said = [line for line in capsys.readouterr().err.splitlines() if "engine" in line]
    assert said == ["preparing the fast CPU engine for fresh, once, ~10 s"]
    assert Predictor.load(str(fresh), engine="auto").engine is not None
    assert "preparing" not in capsys.readouterr().err
