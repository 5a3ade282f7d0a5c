"""Which models Tim offers, how each is described, and the loaded ones kept in memory.

Order matters and is the same everywhere: the bundled offline model(s) first (so
`python app.py` and `tim predict` work with no network), then checkpoint folders
under a models directory, then Hub repos named by the user. Only these entries can
be loaded: a key the UI sends back is looked up here, never used as a path or repo id.
"""
from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from tim.checkpoint import CONFIG_NAME, EVAL_RESULTS_NAME, WEIGHTS_NAME, CheckpointError, has_model
from tim.markup import markdown_text as _md
from tim.validate import validate_checkpoint

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"


def checkpoint_folders(root: str | os.PathLike) -> list[Path]:
    """Direct subfolders of `root` that look like Tim checkpoints (config.json + model.safetensors, or an ensemble's
    config.json: its members are inside it and it is listed once), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and has_model(p))


def bundled_checkpoints() -> list[Path]:
    """The checkpoints shipped inside the package (tim/bundled/<name>/), the default models.

    The model that knows the most artists comes first (it is the default), then by name.
    """
    def artists(folder: Path) -> int:
        return len((_read_json(folder / CONFIG_NAME) or {}).get("label_names") or [])

    return sorted(checkpoint_folders(BUNDLED_DIR), key=lambda folder: (-artists(folder), folder.name))


def default_model() -> str:
    """The first bundled checkpoint, the model used when none is named; LookupError if none is shipped."""
    bundled = bundled_checkpoints()
    if not bundled:
        raise LookupError(
            f"no bundled model in {BUNDLED_DIR} (a folder with {CONFIG_NAME} and {WEIGHTS_NAME}); "
            "name one with --model CHECKPOINT_FOLDER or --model user/name (Hugging Face Hub)."
        )
    return str(bundled[0])


def _read_json(path: Path) -> dict | None:
    """A JSON object from `path`, or None for anything else (missing, unreadable, not JSON, a list, nested too deep)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _dig(value, *keys):
    """value[k1][k2]... where every step is a JSON object, else None: describing a model never fails on its files."""
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class ModelEntry:
    """One model the user can pick. `key` is the dropdown value; `ref` is what tim.hub.load_model gets."""

    key: str
    ref: str
    source: str  # "bundled", "local" or "hub"
    config: dict | None = None  # config.json, when readable without loading the model
    eval_results: dict | None = None  # eval_results.json from `tim evaluate`, when present
    title: str | None = None  # shown instead of the folder name when two folders share a name

    @classmethod
    def from_folder(cls, folder: Path, source: str) -> "ModelEntry":
        return cls(f"{source}:{folder.name}", str(folder), source,
                   _read_json(folder / CONFIG_NAME), _read_json(folder / EVAL_RESULTS_NAME))

    @classmethod
    def from_hub(cls, ref: str) -> "ModelEntry":
        """A Hub repo; described from the local Hugging Face cache if it was downloaded before (no network)."""
        config = None
        try:
            from huggingface_hub import try_to_load_from_cache

            from tim.hub import parse_ref

            repo_id, revision = parse_ref(ref)
            cached = try_to_load_from_cache(repo_id, CONFIG_NAME, revision=revision)
            if isinstance(cached, str):
                config = _read_json(Path(cached))
        except Exception:  # noqa: BLE001 - a description is optional; loading reports real problems
            pass
        return cls(f"hub:{ref}", ref, "hub", config)

    def accuracy(self) -> tuple[float, float | None, float | None] | None:
        """(test accuracy, low, high) from eval_results.json (with its interval) or config["tim"]["metrics"]."""
        acc = _dig(self.eval_results, "metrics", "accuracy")
        if _number(_dig(acc, "value")) is not None and (_dig(self.eval_results, "split") or "test") == "test":
            return _number(acc["value"]), _number(acc.get("low")), _number(acc.get("high"))
        summary = _dig(self.config, "tim", "metrics")
        value = _dig(summary, "accuracy")
        if isinstance(value, dict):
            value = value.get("value")
        if _number(value) is not None and (_dig(summary, "split") or "test") == "test":
            return _number(value), None, None
        return None

    @property
    def name(self) -> str:
        if self.title:
            return self.title
        return self.ref if self.source == "hub" else Path(self.ref).name

    def label(self) -> str:
        """Dropdown text: name · architecture · artists · test accuracy."""
        parts = [self.name + {"bundled": " (bundled)", "hub": " (Hub)"}.get(self.source, "")]
        if self.config:
            parts.append(str(self.config.get("architecture", "?"))[:80])
            labels = self.config.get("label_names")
            parts.append(f"{len(labels) if isinstance(labels, list) else '?'} artists")
        acc = self.accuracy()
        parts.append(f"test accuracy {acc[0]:.1%}" if acc else "test accuracy not measured")
        return " · ".join(parts)

    def details(self) -> str:
        """A Markdown paragraph about the model: where it comes from, its artists and its test accuracy.

        Every value from the checkpoint (name, path, architecture, labels) is escaped as plain text (tim.markup).
        """
        where = {"bundled": "bundled with Tim (works offline)", "local": f"checkpoint folder {_md(self.ref)}",
                 "hub": f"Hugging Face Hub repo {_md(self.ref)}"}[self.source]
        lines = [f"**{_md(self.name)}**: {where}."]
        if self.config:
            pre = _dig(self.config, "tim", "preprocessing")
            size, mode = _dig(pre, "image_size"), _dig(pre, "resize_mode")
            lines.append(f"Architecture {_md(self.config.get('architecture'))}, input "
                         f"{_md('?' if size is None else size)} px ({_md('?' if mode is None else mode)}).")
            labels = self.config.get("label_names")
            if isinstance(labels, list) and labels:
                from tim.plots import display_name  # "Peter_Paul_Rubens" -> "Peter Paul Rubens"

                lines.append(f"{len(labels)} artists: {', '.join(_md(display_name(str(a))) for a in labels)}.")
        acc = self.accuracy()
        if acc:
            value, low, high = acc
            interval = f" (95% interval {low:.1%} to {high:.1%})" if low is not None and high is not None else ""
            lines.append(f"Test accuracy {value:.1%}{interval}.")
        elif self.source == "hub" and not self.config:
            lines.append("Downloaded from the Hub on first use.")
        return " ".join(lines)


class ModelCatalog:
    """The configured models, and an LRU cache of the loaded ones (a model loads on first use)."""

    def __init__(self, entries: list[ModelEntry], max_loaded: int = 2, loader=None):
        self.entries: dict[str, ModelEntry] = {}
        for e in entries:
            if any(listed.ref == e.ref for listed in self.entries.values()):
                continue  # the same model named twice
            first = self.entries.setdefault(e.key, e)
            if first is not e:  # two folders with one name (runs/a/best, runs/b/best): keep both, told apart
                for entry in (first, e):
                    entry.title = str(Path(*Path(entry.ref).parts[-2:]))
                e.key = f"{e.key}#{sum(k.startswith(e.key) for k in self.entries) + 1}"
                self.entries[e.key] = e
        self.max_loaded = max(1, max_loaded)
        self._loader = loader  # ref -> Predictor; Predictor.load unless a test supplies one
        self._loaded: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()  # guards _loaded; loads happen one at a time
        self.errors: dict[str, str] = {}  # key -> why its last load failed

    @classmethod
    def discover(cls, models_dir: str | os.PathLike | None = "models", hub_refs: list[str] | None = None,
                 max_loaded: int = 2) -> "ModelCatalog":
        """Bundled checkpoints, then checkpoint folders in `models_dir`, then Hub repos (`--model` / TIM_MODELS)."""
        entries = [ModelEntry.from_folder(p, "bundled") for p in bundled_checkpoints()]
        if models_dir:
            entries += [ModelEntry.from_folder(p, "local") for p in checkpoint_folders(models_dir)]
        for ref in hub_refs or []:
            ref = ref.strip()
            if not ref:
                continue
            if Path(ref).expanduser().is_dir():  # --model may also name a local checkpoint folder
                entries.append(ModelEntry.from_folder(Path(ref).expanduser().resolve(), "local"))
            else:
                entries.append(ModelEntry.from_hub(ref))
        catalog = cls(entries, max_loaded)
        catalog.check_folders()
        return catalog

    def check_folders(self) -> None:
        """Validate every local checkpoint now (tim.validate, a fraction of a second each), so one that Tim would
        refuse is listed as unavailable, with its reason, from the start; the others serve as usual.
        Hub models are checked when they are first loaded (they may not be downloaded yet)."""
        for key, entry in self.entries.items():
            if entry.source == "hub":
                continue
            try:
                validate_checkpoint(entry.ref)
            except CheckpointError as e:
                self.errors[key] = str(e)

    def choices(self) -> list[tuple[str, str]]:
        """(label, key) pairs for a dropdown, in catalog order; a model that cannot be used says so."""
        return [(e.label() + (" · unavailable" if e.key in self.errors else ""), e.key) for e in self.entries.values()]

    @property
    def default_key(self) -> str | None:
        return next(iter(self.entries), None)

    def entry(self, key: str) -> ModelEntry:
        """The entry for a key sent by the UI; KeyError for anything not configured."""
        if not isinstance(key, str) or key not in self.entries:
            raise KeyError(f"unknown model {key!r}; choose one of the listed models")
        return self.entries[key]

    def get(self, key: str):
        """The loaded Predictor for `key`, loading it on first use and evicting the least recently used."""
        entry = self.entry(key)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            try:
                predictor = self._load(entry.ref)
            except Exception as e:  # noqa: BLE001 - any load failure is reported for this model only
                message = str(e) or type(e).__name__
                # Tim's own errors already say what to do; anything else gets its type for context
                self.errors[key] = message if isinstance(e, CheckpointError) else f"{type(e).__name__}: {message}"
                raise
            self.errors.pop(key, None)
            if entry.config is None:  # a Hub model: describe it now that its config is known
                entry.config = getattr(predictor, "config", None)
            self._loaded[key] = predictor
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)
            return predictor

    def _load(self, ref: str):
        if self._loader is not None:
            return self._loader(ref)
        from tim.predictor import Predictor

        return Predictor.load(ref)

    def is_loaded(self, key: str) -> bool:
        return key in self._loaded
