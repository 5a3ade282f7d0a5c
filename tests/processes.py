"""For tests that start other processes: a free local port (the app's server, torchrun's rendezvous) and
`accelerate launch` with two CPU processes (Tim's multi-process paths)."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_cpu_processes(*args: str) -> tuple[list[str], dict]:
    """The command and environment that run `args` (a script or `-m module ...`) in two CPU processes (gloo).

    `accelerate launch --cpu --num_processes 2` starts ONE process (huggingface/accelerate#2741), so this uses
    the torchrun launcher (--multi_gpu) with ACCELERATE_USE_CPU. GPUs are hidden: on a machine with fewer GPUs
    than processes, Accelerate's barrier asks each rank for its own GPU and rank 1 dies (seen on a one-GPU H200).
    The caller's PYTHONPATH is kept, with the repository in front.
    """
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), *args]
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    return command, env
