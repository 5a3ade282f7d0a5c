"""The inference benchmarks run end to end in seconds with --smoke (a tiny random model, generated images)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["bench_predict.py", "bench_app_latency.py"])
def test_benchmark_smoke_run(script, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TIM_ENGINE": "auto", "TIM_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--smoke"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "ONNX Runtime" in result.stdout or "engine" in result.stdout
