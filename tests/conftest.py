"""Tests run offline, on small images they make themselves, with tiny timm models."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# eager PyTorch unless a test asks for the ONNX Runtime engine (its export takes seconds per model);
# tests/test_engine.py, test_predict.py and test_gradcam.py run the engine
os.environ["TIM_ENGINE"] = "eager"

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    """Each test gets its own Tim and Hugging Face caches, so nothing leaks between tests or from the machine."""
    monkeypatch.setenv("TIM_CACHE", str(tmp_path / "tim-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    yield
