"""Tim's CPU inference engine: the model exported to ONNX once, run by ONNX Runtime, checked against PyTorch.

Why: on a CPU, ONNX Runtime (graph optimisation on, BatchNorm folded, fused kernels)
runs Tim's models several times faster than eager PyTorch, in plain fp32, so its
answers are the model's answers on every CPU, with or without bf16 units.

How it stays faithful and safe:
- built from the loaded model (its safetensors weights) on first use, by
  `torch.onnx.export`; one graph gives the logits, the pooled pre-logit features,
  the last feature map (Grad-CAM starts from it) and the texture statistics
  (tim.models.TextureTap: what the not-a-painting decision also reads), so every caller shares it;
- cached as `.tim-engine/<weights sha256>-<build tag>.onnx` inside the checkpoint
  folder when it is writable (local checkpoints only), else under `$TIM_CACHE/engines`;
  the build tag covers the Tim engine, torch, onnx, onnxscript, onnxruntime and timm
  versions, the architecture and the input size. Only a file found under that key is
  opened, and it is used only after it answers a probe batch as the PyTorch model does
  (else it is rebuilt), so a stale, corrupt or foreign file never answers for the model;
- any failure (export, runtime, probe) leaves the caller on eager PyTorch, with one line
  on stderr saying so.

TIM_ENGINE=eager switches the engine off (auto, the default, uses it on CPUs).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sys
import threading
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from tim.models import TextureTap

ENGINE_VERSION = 2  # 2: texture output (tim.models.TextureTap). Bump when what the exported graph computes changes
ENGINE_DIR = ".tim-engine"
ENGINE_CHOICES = ("auto", "eager")
OUTPUTS = ("logits", "features", "feature_map", "texture")
CHECKED = ("logits", "features", "texture")  # what must match the eager model on the probe batch
MAX_BATCH = 4096
# the engine must reproduce the PyTorch model's logits and features on a probe batch to this tolerance
PROBE_RTOL, PROBE_ATOL = 1e-3, 1e-3


class EngineError(RuntimeError):
    """The engine cannot be built or does not behave like the model; the caller falls back to PyTorch."""


def engine_choice(choice: str | None = None) -> str:
    """The engine asked for: the argument, else $TIM_ENGINE, else "auto"."""
    choice = (choice or os.environ.get("TIM_ENGINE") or "auto").lower()
    if choice not in ENGINE_CHOICES:
        raise ValueError(f"engine {choice!r} (TIM_ENGINE?) is not one of {ENGINE_CHOICES}")
    return choice


def cpu_threads() -> int:
    """ONNX Runtime intra-op threads: $OMP_NUM_THREADS when set (accelerate launch sets it), else every usable core."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 of the model's weights and buffers (names, dtypes, shapes, bytes): what the engine is built from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def build_tag(architecture: str, image_size: int) -> str:
    """Everything besides the weights that decides the exported graph, hashed to 12 hex digits."""
    parts = {"engine": ENGINE_VERSION, "architecture": architecture, "image_size": int(image_size),
             **{p: _version(p) for p in ("torch", "onnx", "onnxscript", "onnxruntime", "timm")}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def engine_folders(checkpoint: str | os.PathLike | None) -> list[Path]:
    """Where engines are looked for and written: beside a local checkpoint first, then the Tim cache."""
    cache = Path(os.environ.get("TIM_CACHE", Path.home() / ".cache" / "tim")) / "engines"
    folders = [cache]
    beside = Path(checkpoint) / ENGINE_DIR if checkpoint is not None else None
    # a .tim-engine that is a link (a checkpoint from someone else could point it anywhere) is never written through
    if beside is not None and os.access(checkpoint, os.W_OK) and not beside.is_symlink():
        folders.insert(0, beside)
    return folders


class _Outputs(torch.nn.Module):
    """The model as the engine sees it: images -> (logits, pooled features, last feature map, texture statistics).
    Its texture hooks stay on the model until `close()` (it is a context manager)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.tap = TextureTap(model)

    def forward(self, images):
        feature_map = self.model.forward_features(images)  # the texture hooks fire inside it
        features = self.model.forward_head(feature_map, pre_logits=True)
        return self.model.get_classifier()(features), features, feature_map, self.tap.take_or_empty(features)

    def __enter__(self) -> "_Outputs":
        return self

    def __exit__(self, *_exc) -> None:
        self.tap.close()


def reference_outputs(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What the engine must reproduce: the eager fp32 forward, as (logits, features, feature_map, texture)."""
    with torch.inference_mode(), _Outputs(model) as outputs:
        return outputs(images)


def export_onnx(model: torch.nn.Module, image_size: int) -> bytes:
    """The model as an ONNX graph (dynamic batch, fixed image size), from torch.onnx's torch.export-based exporter."""
    for needed in ("onnx", "onnxscript"):
        if _version(needed) == "missing":
            raise EngineError(f"the ONNX exporter needs the `{needed}` package (pip install {needed})")
    example = torch.zeros(2, 3, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with _Outputs(model) as outputs:
        program = torch.onnx.export(outputs.eval(), (example,), None, dynamo=True, verbose=False,
                                    input_names=["images"], output_names=list(OUTPUTS),
                                    dynamic_shapes={"images": {0: batch}})
    return program.model_proto.SerializeToString()


class OnnxEngine:
    """An ONNX Runtime session on the CPU; `run` takes a float32 NCHW batch and returns the outputs asked for."""

    def __init__(self, model: bytes | str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or cpu_threads()
        options.inter_op_num_threads = 1
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.threads = options.intra_op_num_threads

    def run(self, batch: torch.Tensor | np.ndarray, outputs=("logits", "features")) -> list[torch.Tensor]:
        x = batch.detach().cpu().float().contiguous().numpy() if isinstance(batch, torch.Tensor) else batch
        return [torch.from_numpy(o) for o in self.session.run(list(outputs), {"images": x})]


def probe_batch(image_size: int) -> torch.Tensor:
    return torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))


def check_engine(engine: OnnxEngine, model: torch.nn.Module, image_size: int) -> None:
    """Raise EngineError unless the engine's logits, features and texture are the eager model's, on a probe batch."""
    probe = probe_batch(image_size)
    reference = dict(zip(OUTPUTS, reference_outputs(model, probe)))
    for name, got in zip(CHECKED, engine.run(probe, CHECKED)):
        want = reference[name]
        if got.shape != want.shape or not torch.allclose(got, want.float(), rtol=PROBE_RTOL, atol=PROBE_ATOL):
            diff = (got - want).abs().max().item() if got.shape == want.shape else f"shape {tuple(got.shape)}"
            raise EngineError(f"the engine's {name} differ from PyTorch's on a probe batch (max |diff| {diff})")


FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write through a temporary file and a rename; a failed write (full disk, read-only) leaves no temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _cache(data: bytes, name: str, folders: list[Path], broken: list[Path]) -> None:
    """Store the engine under its key in the first writable folder, and over every broken copy found on the way.

    A full disk raises EngineError: the engine is not kept, and the caller runs eager PyTorch
    (one notice) rather than filling the disk again on every run.
    """
    stored = False
    for path in broken + [folder / name for folder in folders]:
        if stored and path not in broken:
            continue
        try:
            _write_atomically(path, data)
            stored = True
        except OSError as e:
            if path in broken:
                with contextlib.suppress(OSError):
                    path.unlink()  # cannot be replaced: at least it is not read again
            if e.errno in FULL_DISK:
                raise EngineError(f"no space left to cache the engine in {path.parent} ({os.strerror(e.errno)}); "
                                  "free some space") from None


def load_engine(model: torch.nn.Module, architecture: str, image_size: int,
                checkpoint: str | os.PathLike | None = None) -> OnnxEngine:
    """The checked engine for `model`: a cached one found by its key, else a fresh export (cached for next time).

    `checkpoint`: the model's local folder (None for a Hub model: its engine goes to the Tim cache,
    never into the download). Raises EngineError (or the exporter's error) when no engine can be used.
    """
    name = f"{weights_sha256(model)[:32]}-{build_tag(architecture, image_size)}.onnx"
    folders = engine_folders(checkpoint)
    broken: list[Path] = []  # corrupt or foreign files under the key: replaced by the good engine, wherever they lie
    for folder in folders:
        path = folder / name
        if path.is_file():
            try:
                engine = OnnxEngine(path)
                check_engine(engine, model, image_size)
            except Exception as e:  # noqa: BLE001 - corrupt or foreign: replaced below
                print(f"note: ignoring engine file {path} ({first_line(e)}); it is replaced", file=sys.stderr)
                broken.append(path)
                continue
            if broken:
                with contextlib.suppress(EngineError):  # a full disk: this engine still answers
                    _cache(path.read_bytes(), name, [], broken)
            return engine
    label = Path(checkpoint).name if checkpoint else architecture
    print(f"preparing the fast CPU engine for {label}, once, ~10 s", file=sys.stderr, flush=True)
    data = export_onnx(model, image_size)
    engine = OnnxEngine(data)
    check_engine(engine, model, image_size)
    _cache(data, name, folders, broken)  # read-only checkpoint folder: the Tim cache next
    return engine


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]
