"""The first answer of a freshly started app: how long after the page is served, with and without the warm-up.

Starts `python app.py` as a visitor's machine would, with the default model's ONNX Runtime engine not built
yet (its cached file is deleted first, unless --keep-engine; the app writes it back), waits for the page, then
asks for one painting over Gradio's HTTP API (gradio_client, like tests/test_app.py):

- warm-up (the default): the engine is built in the background while the page is served; the question is
  asked once the app says the engine is ready. Goal: first answer <= 2 s.
- --no-warm-up: the question is asked as soon as the page is served, and the engine is built for it.

    python benchmarks/bench_first_answer.py                 # both, the default bundled model
    python benchmarks/bench_first_answer.py --smoke         # eager PyTorch, seconds: only checks the script runs
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tim.catalog import ModelCatalog, default_model  # noqa: E402
from tim.engine import ENGINE_DIR  # noqa: E402
from bench_app_latency import PAINTINGS, painting  # noqa: E402 - benchmarks/bench_app_latency.py
sys.path.insert(0, str(REPO / "tests"))
from processes import free_port  # noqa: E402 - tests/processes.py


def wait_for_page(url: str, process: subprocess.Popen, timeout: float = 300) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter()
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} was not served within {timeout} s")


def first_answers(image: str, warm_up: bool, env: dict) -> dict:
    """Seconds from the start to the page, to the warm-up's end, and the first and second answers' durations."""
    from gradio_client import Client, handle_file

    port = free_port()
    command = [sys.executable, str(REPO / "app.py"), "--port", str(port)]
    command += [] if warm_up else ["--no-warm-up"]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    ready, lines = threading.Event(), []

    def read_stderr():
        for line in process.stderr:
            lines.append(line.rstrip())
            if " is ready (" in line:
                ready.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    try:
        page = wait_for_page(f"http://127.0.0.1:{port}/", process) - start
        if warm_up and not ready.wait(300):
            raise TimeoutError("the warm-up did not finish within 300 s: " + " | ".join(lines[-5:]))
        warmed = time.perf_counter() - start
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        key = ModelCatalog.discover(None).default_key
        times = []
        for _ in range(2):
            t = time.perf_counter()
            status, _, _ = client.predict(key, [handle_file(image)], api_name="/analyze")
            times.append(time.perf_counter() - t)
            assert "Analysed 1 of 1" in status, status
        return {"page": page, "warmed": warmed, "first": times[0], "second": times[1],
                "said": [line for line in lines if "engine" in line or "ready" in line]}
    finally:
        process.terminate()
        process.wait(30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--image", help="painting to ask about (default: one of paintings-15, else generated)")
    parser.add_argument("--keep-engine", action="store_true", help="keep the engine cached by an earlier run")
    parser.add_argument("--smoke", action="store_true", help="eager PyTorch, warm-up only: seconds")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        image = args.image or next(iter(sorted(PAINTINGS.glob("*/*.jpg"))), None)
        if image is None:
            image = Path(tmp) / "painting.jpg"
            image.write_bytes(painting())
        env = {**os.environ, "TIM_CACHE": str(Path(tmp) / "tim-cache"), "GRADIO_ANALYTICS_ENABLED": "False",
               "PYTHONPATH": str(REPO)}
        if args.smoke:
            env["TIM_ENGINE"] = "eager"
        engines = Path(default_model()) / ENGINE_DIR
        print(f"{default_model()}, image {image}; CPU: {os.cpu_count()} cores")
        for warm_up in (True,) if args.smoke else (True, False):
            if not args.keep_engine and not args.smoke:
                for cached in engines.glob("*.onnx"):
                    cached.unlink()  # a visitor's first start: no engine yet (this run writes it back)
            r = first_answers(str(image), warm_up, env)
            print(f"{'warm-up' if warm_up else 'no warm-up'}: page served {r['page']:.1f} s after start, "
                  f"asked at {r['warmed']:.1f} s; first answer {r['first']:.2f} s, second {r['second']:.2f} s")
            for line in r["said"]:
                print(f"    app: {line}")


if __name__ == "__main__":
    main()
