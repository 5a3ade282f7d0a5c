"""Every script in benchmarks/ still runs: each is started with --smoke (tiny generated inputs, seconds).

The full measurements stay manual; this only makes sure a refactor cannot break a benchmark unnoticed.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (REPO / "benchmarks").glob("*.py") if not p.name.startswith("_"))


def test_the_benchmarks_are_found():
    assert {"bench_loader.py", "bench_train_loop.py", "bench_metrics.py", "bench_predict.py",
            "bench_app_latency.py", "bench_backbones.py", "shared_artists.py"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_runs_in_smoke_mode(script, tmp_path):
    result = subprocess.run([sys.executable, str(script), "--smoke"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(REPO), "TIM_ENGINE": "auto",
                                                 "TIM_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.strip(), "a benchmark prints its numbers"
