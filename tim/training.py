"""The training loop: one Accelerate loop for a laptop CPU, one GPU, or `accelerate launch` on many.

Read it top to bottom in `train()`: checks, data, model with learning-rate
tiers, optimizer and scheduler, resume or start, then epochs of train ->
validate -> early stop -> one atomic save. Everything it needs is in one
`TrainConfig`, which is also what the YAML files in configs/ hold.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import timm
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tim.atomic import recover_folder, replace_folder, write_text_atomically
from tim.checkpoint import save_checkpoint
from tim.data import DataConfig, IndexedSplit, TransformedSplit, prepare_data, split_datasets
from tim.data.transforms import AUGMENTATIONS
from tim.distill import DistillationLoss, teacher_targets
from tim.errors import ConfigError, RunFolderError
from tim.images import RESIZE_MODES
from tim.metrics import compute_metrics
from tim.models import Tiers, build_model, tier_groups
from tim.outliers import forever, outlier_images, uniform_loss

LOG_NAME = "log.csv"
STATE = "state"  # Accelerate's training state, with the log up to the epoch it holds
RUN_FILES = (LOG_NAME, "run.json", STATE, "best", "last")  # what makes a folder hold a run
CHOICES = {  # setting -> accepted values
    "optimizer": ("adam", "adamw"),
    "scheduler": ("plateau", "cosine", "none"),
    "class_weights": ("none", "inverse_sqrt"),
    "augment": AUGMENTATIONS,
    "early_stopping_metric": ("accuracy", "f1_macro"),
    "mixed_precision": (None, "no", "fp16", "bf16"),
}
LOG_COLUMNS = [
    "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_f1_macro",
    "lr_early", "lr_intermediate", "lr_final", "seconds", "images_per_second",
]


@dataclass
class TrainConfig:
    model: str = "resnet50"
    pretrained: str = "timm"  # timm | offline | none | path/to/weights.safetensors
    data: DataConfig = field(default_factory=DataConfig)
    output_dir: str = "runs/resnet50"
    epochs: int = 20
    batch_size: int = 32  # per device
    gradient_accumulation_steps: int = 1
    tiers: Tiers = field(default_factory=Tiers)
    freeze_backbone: bool = False  # train only the new head (the ResNet-50 baseline)
    optimizer: str = "adam"  # adam | adamw
    weight_decay: float = 0.0
    scheduler: str = "plateau"  # plateau (on validation loss) | cosine | none
    plateau_factor: float = 0.1
    plateau_patience: int = 2
    warmup_epochs: float = 0.0  # cosine only
    label_smoothing: float = 0.0
    augment: str = "reference"  # reference | strong | photo (tim.data.transforms.train_transform)
    class_weights: str = "none"  # none | inverse_sqrt (weights the loss towards rare artists, for macro-F1)
    teachers: list[str] = field(default_factory=list)  # checkpoints to distil from (tim.distill)
    distill_weight: float = 0.5  # share of the loss that follows the teachers
    distill_temperature: float = 2.0
    early_stopping_patience: int = 5
    early_stopping_metric: str = "accuracy"  # accuracy | f1_macro (validation)
    seed: int = 42
    num_workers: int = 2
    channels_last: bool = True
    mixed_precision: str | None = None  # no | fp16 | bf16; None = Accelerate's config
    report_to: str | None = None  # e.g. tensorboard
    max_steps_per_epoch: int | None = None  # for smoke tests
    evaluate_test: bool = True  # evaluate the best checkpoint on the held-out test split at the end
    calibrate: bool = True  # fit calibration + the unknown-artist decision on validation at the end (tim calibrate)
    unknown: str | None = None  # paintings of other artists for the unknown-artist decision (tim calibrate --unknown)
    not_paintings: str | None = None  # photos that are not paintings, for that decision (tim calibrate --not-paintings)
    outlier_exposure: float = 0.0  # weight of the loss on the fit parts of unknown + not_paintings (tim.outliers)
    outlier_batch_size: int = 8  # outliers added to each batch
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = False

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["data"] = self.data.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown training settings {sorted(unknown)}; known ones are "
                              f"{sorted(cls.__dataclass_fields__)}")
        for block, kind in (("tiers", Tiers), ("data", DataConfig)):
            unknown = set(d.get(block) or {}) - set(kind.__dataclass_fields__)
            if unknown:
                raise ConfigError(f"unknown {block} settings {sorted(unknown)}; known ones are "
                                  f"{sorted(kind.__dataclass_fields__)}")
        tiers = Tiers(**(d.pop("tiers", {}) or {}))
        data = DataConfig.from_dict(d.pop("data", {}) or {})
        return cls(data=data, tiers=tiers, **d)

    def validate(self) -> None:
        """Raise ConfigError for the first setting Tim would fail on later, naming its flag and the accepted values.

        Runs before any data is read or any model is built, so a typo costs seconds, not an epoch.
        """
        def bad(name: str, accepted: str) -> ConfigError:
            flag = "--" + name.replace("_", "-")
            return ConfigError(f"{name} ({flag}) = {getattr(self, name)!r} is not accepted: {accepted}.")

        numbers = {name: getattr(self, name) for name in ("weight_decay", "warmup_epochs", "label_smoothing",
                                                           "plateau_factor", "distill_weight",
                                                           "distill_temperature")}
        numbers.update({f"lr_{t}": getattr(self.tiers, t) for t in ("early", "intermediate", "final")})
        for name, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} (--{name.replace('_', '-')}) = {value!r} is not accepted: a number.")
        if self.early_stopping_metric == "loss":
            raise bad("early_stopping_metric", "early stopping keeps the epoch with the highest score, so use "
                                               "accuracy or f1_macro (validation loss is what --scheduler plateau follows)")
        for name, accepted in CHOICES.items():
            if getattr(self, name) not in accepted:
                raise bad(name, "choose one of " + ", ".join(str(a) for a in accepted if a is not None))
        if ":" not in self.model and not timm.is_model(self.model):  # hf-hub:/local-dir: names go to timm as they are
            raise bad("model", "not a timm architecture (see `tim models` or timm.list_models())")
        if self.pretrained not in ("timm", "offline", "none"):
            if not self.pretrained.endswith(".safetensors"):
                raise bad("pretrained", "use timm, offline, none, or a .safetensors file (pickles are never loaded)")
            if not Path(self.pretrained).is_file():
                raise bad("pretrained", "no such .safetensors file")
        if self.pretrained == "offline":
            from tim.models import OFFLINE_WEIGHTS

            if self.model not in OFFLINE_WEIGHTS:
                raise bad("pretrained", f"offline weights exist only for {sorted(OFFLINE_WEIGHTS)}")
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "early_stopping_patience"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "a whole number >= 1")
        if self.num_workers < 0:
            raise bad("num_workers", "a whole number >= 0")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise bad("max_steps_per_epoch", "a whole number >= 1")
        for name in ("weight_decay", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise bad(name, "a number >= 0")
        if not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", "a number from 0 up to (not including) 1")
        for tier in ("early", "intermediate", "final"):
            if getattr(self.tiers, tier) < 0:
                raise ConfigError(f"tiers.{tier} (--lr-{tier}) = {getattr(self.tiers, tier)!r} is not accepted: "
                                  "a learning rate >= 0 (0 freezes the tier).")
        if not 0 <= self.tiers.early_fraction <= 1:
            raise ConfigError(f"tiers.early_fraction (--early-fraction) = {self.tiers.early_fraction!r} is not "
                              "accepted: a number from 0 to 1.")
        if self.data.resize_mode not in RESIZE_MODES:
            raise ConfigError(f"data.resize_mode (--resize-mode) = {self.data.resize_mode!r} is not accepted: "
                              f"choose one of {', '.join(RESIZE_MODES)}.")
        if self.data.image_size < 8:
            raise ConfigError(f"data.image_size (--image-size) = {self.data.image_size!r} is not accepted: "
                              "a whole number of pixels >= 8.")
        fractions = tuple(self.data.fractions)
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
            raise ConfigError(f"data.fractions (--fractions) = {fractions} is not accepted: three numbers >= 0 "
                              "(train, validation, test) that sum to 1.")
        if not self.data.source:
            raise ConfigError("no data source: pass --data PATH_OR_HUB_ID or set data.source in the config.")
        if self.unknown is not None and not Path(self.unknown).is_dir():
            raise bad("unknown", "a folder of other artists' paintings, one sub-folder per artist")
        if self.not_paintings is not None and not Path(self.not_paintings).is_dir():
            raise bad("not_paintings", "a folder of photos that are not paintings")
        if isinstance(self.outlier_exposure, bool) or not isinstance(self.outlier_exposure, (int, float)) \
                or self.outlier_exposure < 0:
            raise bad("outlier_exposure", "a number >= 0 (0 = off)")
        if self.outlier_exposure and not (self.unknown or self.not_paintings):
            raise bad("outlier_exposure", "give the outliers too: --unknown DIR and/or --not-paintings DIR")
        if not isinstance(self.outlier_batch_size, int) or self.outlier_batch_size < 1:
            raise bad("outlier_batch_size", "a whole number >= 1")
        if not 0 <= self.distill_weight <= 1:
            raise bad("distill_weight", "a number from 0 (labels only) to 1 (teachers only)")
        if not self.distill_temperature > 0:
            raise bad("distill_temperature", "a number > 0")
        from tim.hub import is_hub_ref

        for teacher in self.teachers:
            if not is_hub_ref(teacher) and not Path(teacher).is_dir():
                raise ConfigError(f"teachers (--teacher) = {teacher!r} is not accepted: no such checkpoint folder "
                                  "(give a folder written by `tim train`, e.g. runs/NAME/best, or a Hub repo id).")
        if self.push_to_hub and not self.hub_model_id:
            raise ConfigError("--push-to-hub needs --hub-model-id USER/NAME (the Hub repo to push the best model to).")


class Progress:
    """Where the run is: epoch, best validation score, epochs without improvement.

    Registered with Accelerate so `save_state`/`load_state` carry it with the
    model, optimizer, scheduler and RNG states.
    """

    def __init__(self):
        self.epoch = 0
        self.best = -math.inf
        self.bad_epochs = 0

    def state_dict(self):
        return {"epoch": self.epoch, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state):
        self.epoch, self.best, self.bad_epochs = state["epoch"], state["best"], state["bad_epochs"]


def make_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    if cfg.scheduler == "cosine":
        total = max(1, cfg.epochs * steps_per_epoch)
        warmup = int(cfg.warmup_epochs * steps_per_epoch)

        def factor(step):
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if cfg.scheduler == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"scheduler {cfg.scheduler!r}: choose plateau, cosine or none")


def make_optimizer(cfg: TrainConfig, groups: list[dict]):
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer {cfg.optimizer!r}: choose adam or adamw")


def class_weights(split, num_classes: int, kind: str, device=None) -> torch.Tensor | None:
    """Per-artist loss weights: `inverse_sqrt` gives an artist with 4x fewer paintings 2x the weight."""
    if kind == "none":
        return None
    if kind != "inverse_sqrt":
        raise ValueError(f"class_weights {kind!r}: choose none or inverse_sqrt")
    counts = np.bincount(np.asarray(split["artist"]), minlength=num_classes).clip(min=1)
    weights = 1.0 / np.sqrt(counts)
    return torch.tensor(weights / weights.mean(), dtype=torch.float32, device=device)


def train_one_epoch(model, batches, optimizer, scheduler, criterion, accelerator, cfg: TrainConfig, desc="",
                    outliers=None):
    """One pass over `batches`; returns ([images, loss sum, correct] summed over ranks, seconds).

    With `outliers` (endless batches, tim.outliers) each step also shows the model a few of them and adds
    cfg.outlier_exposure x their loss against the uniform answer. Running sums stay on the device (no `.item()`
    per step), so a GPU is never made to wait for the host.
    """
    model.train()
    started, steps = time.perf_counter(), 0
    sums = torch.zeros(3, device=accelerator.device, dtype=torch.float64)
    bar = tqdm(batches, desc=desc, disable=not accelerator.is_main_process, leave=False)
    for i, (x, y, *index) in enumerate(bar):  # the row index comes only with --teacher (tim.distill)
        if outliers is not None:
            x = torch.cat([x, next(outliers)[0]])
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with accelerator.accumulate(model):
            with accelerator.autocast():
                answers = model(x)
                logits = answers[:len(y)]
                loss = criterion(logits, y, *index)
                if outliers is not None:
                    loss = loss + cfg.outlier_exposure * uniform_loss(answers[len(y):])
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            if accelerator.sync_gradients:
                steps += 1
                if cfg.scheduler != "plateau":
                    scheduler.step()
        sums += torch.stack([torch.tensor(len(y), device=sums.device, dtype=sums.dtype),
                             loss.detach().double() * len(y), (logits.argmax(-1) == y).sum().double()])
        if i % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if cfg.max_steps_per_epoch and steps >= cfg.max_steps_per_epoch:
            break
    seconds = time.perf_counter() - started
    return accelerator.reduce(sums), seconds


@torch.no_grad()
def validate(model, loader, accelerator, channels_last: bool) -> dict:
    """Loss, accuracy and macro-F1 over the whole split, each image counted once on every rank."""
    model.eval()
    losses, preds, labels = [], [], []
    for x, y in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with accelerator.autocast():
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y, reduction="none")
        loss, pred, y = accelerator.gather_for_metrics((loss, logits.argmax(-1), y))
        losses.append(loss.cpu())
        preds.append(pred.cpu())
        labels.append(y.cpu())
    scores = compute_metrics(torch.cat(labels).numpy(), torch.cat(preds).numpy())
    return {
        "val_loss": float(torch.cat(losses).mean()),
        "val_accuracy": scores["accuracy"],
        "val_f1_macro": scores["f1_macro"],
    }


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Train `cfg.model` on `cfg.data`; returns the run folder (best/, last/, state/, log.csv).

    An --output-dir that already holds a run is continued (`resume`) or replaced (`overwrite`),
    never both and never silently; a ConfigError or RunFolderError comes before any data is read.
    """
    # ---- setup: options and the run folder are checked before anything is read or built
    cfg.validate()
    out = Path(cfg.output_dir)
    check_output_dir(out, resume, overwrite)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=cfg.mixed_precision,
        log_with=cfg.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    main = accelerator.is_main_process
    if cfg.push_to_hub:  # fail now, not after 20 epochs; every rank checks, so none is left waiting
        from tim.hub import check_push_access

        check_push_access(cfg.hub_model_id)
    set_seed(cfg.seed)

    # ---- data: prepared once (main process first, the others reuse its cache)
    with accelerator.main_process_first():
        data = prepare_data(cfg.data)
    if main and data.bad_files:
        print(f"Skipped {len(data.bad_files)} unreadable file(s):")
        for bad in data.bad_files:
            print(f"  {bad.path}: {bad.reason}")
    preprocessing = {"resize_mode": cfg.data.resize_mode, "image_size": cfg.data.image_size,
                     "pad_color": list(cfg.data.pad_color)}
    if cfg.teachers:  # their answers on every training painting, before the run folder is touched
        targets = teacher_targets(cfg.teachers, data.splits["train"], data.artists, preprocessing,
                                  cfg.distill_temperature, cfg.batch_size, cfg.num_workers, accelerator)

    # ---- model, with the normalisation its pretrained weights expect
    model = build_model(cfg.model, num_classes=len(data.artists), pretrained=cfg.pretrained)
    norm = timm.data.resolve_data_config(model=model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    sets = split_datasets(data.splits, norm["mean"], norm["std"], pad_color=cfg.data.pad_color,
                          augment=cfg.augment, size=cfg.data.image_size)
    train_set, val_set = sets["train"], sets["validation"]
    if cfg.teachers:  # the loss looks up the teachers' answer for each painting by its row index
        train_set = IndexedSplit(data.splits["train"], train_set.transform)
    loader_args = dict(batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                       persistent_workers=cfg.num_workers > 0)
    train_loader = DataLoader(train_set, shuffle=True, drop_last=len(train_set) > cfg.batch_size, **loader_args)
    val_loader = DataLoader(val_set, shuffle=False, **loader_args)
    outlier_loader = None
    if cfg.outlier_exposure:  # the fit parts only: what calibrate and evaluate hold out stays unseen
        with accelerator.main_process_first():
            outlier_set = outlier_images(cfg.data, data.artists, cfg.unknown, cfg.not_paintings)
        outlier_loader = DataLoader(TransformedSplit(outlier_set, train_set.transform), shuffle=True, drop_last=True,
                                    **{**loader_args, "batch_size": min(cfg.outlier_batch_size, len(outlier_set))})
        accelerator.print(f"Outlier exposure: {len(outlier_set)} outliers, {cfg.outlier_batch_size} per batch, "
                          f"weight {cfg.outlier_exposure}")

    groups = tier_groups(model, cfg.tiers, cfg.freeze_backbone)
    optimizer = make_optimizer(cfg, groups)
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    outliers = forever(accelerator.prepare(outlier_loader)) if outlier_loader is not None else None
    steps_per_epoch = math.ceil(len(train_loader) / cfg.gradient_accumulation_steps)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    scheduler = make_scheduler(cfg, optimizer, steps_per_epoch)
    progress = Progress()
    accelerator.register_for_checkpointing(scheduler, progress)

    # ---- resume or start
    if resume:
        accelerator.load_state(str(out / STATE))
        if main:
            restore_log(out, progress.epoch)
        accelerator.print(f"Resumed from {out / STATE} at epoch {progress.epoch}")
    elif main:
        start_run(out, cfg, overwrite)
    accelerator.wait_for_everyone()
    if cfg.report_to:
        accelerator.init_trackers("tim", config={"model": cfg.model, "epochs": cfg.epochs})
    accelerator.print(
        f"Training {cfg.model} on {len(data.artists)} artists: {len(train_set)} train / {len(val_set)} val images, "
        f"{accelerator.num_processes} process(es) on {accelerator.device}"
    )

    criterion = torch.nn.CrossEntropyLoss(
        weight=class_weights(data.splits["train"], len(data.artists), cfg.class_weights, accelerator.device),
        label_smoothing=cfg.label_smoothing,
    )
    checkpoint_extra = {"data": cfg.data.to_dict(), "train": _recipe(cfg)}
    if cfg.teachers:
        criterion = DistillationLoss(criterion, targets, cfg.distill_weight, cfg.distill_temperature).to(
            accelerator.device)

    while progress.epoch < cfg.epochs and progress.bad_epochs < cfg.early_stopping_patience:
        epoch, started = progress.epoch, time.perf_counter()
        totals, train_seconds = train_one_epoch(
            model, train_loader, optimizer, scheduler, criterion, accelerator, cfg,
            desc=f"epoch {epoch + 1}/{cfg.epochs}", outliers=outliers,
        )
        metrics = validate(model, val_loader, accelerator, cfg.channels_last)
        if cfg.scheduler == "plateau":
            scheduler.step(metrics["val_loss"])
        lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
        row = {
            "epoch": epoch + 1,
            "train_loss": float(totals[1] / totals[0]),
            "train_accuracy": float(totals[2] / totals[0]),
            **metrics,
            **{f"lr_{tier}": lrs.get(tier, 0.0) for tier in ("early", "intermediate", "final")},
            "seconds": round(time.perf_counter() - started, 1),
            "images_per_second": round(float(totals[0]) / train_seconds, 2),
        }
        accelerator.print(
            f"epoch {row['epoch']}: train loss {row['train_loss']:.3f} acc {row['train_accuracy']:.3f} | "
            f"val loss {row['val_loss']:.3f} acc {row['val_accuracy']:.3f} F1 {row['val_f1_macro']:.3f} | "
            f"{row['images_per_second']} img/s"
        )
        if cfg.report_to:
            accelerator.log(row, step=epoch + 1)

        # ---- early stopping: every rank sees the same gathered metrics, so all decide alike
        score = metrics[f"val_{cfg.early_stopping_metric}"]
        improved = score > progress.best
        progress.best = max(progress.best, score)
        progress.bad_epochs = 0 if improved else progress.bad_epochs + 1
        progress.epoch += 1

        # ---- one atomic save: model folders first, then the state with its log row (the commit point)
        extra = {**checkpoint_extra, "epoch": epoch + 1, "validation": metrics}
        save_epoch(accelerator, model, out, row, improved, data.artists, preprocessing, extra)

    if progress.bad_epochs >= cfg.early_stopping_patience:
        accelerator.print(f"Early stop: no better validation {cfg.early_stopping_metric} for "
                          f"{cfg.early_stopping_patience} epochs (best {progress.best:.4f}).")
    accelerator.wait_for_everyone()
    if cfg.calibrate and (out / "best").is_dir():  # before the test evaluation, so its report is calibrated
        from tim.calibrate import calibrate_checkpoint

        calibrate_checkpoint(out / "best", cfg.data.source, cfg.unknown, cache_dir=cfg.data.cache_dir,
                             batch_size=cfg.batch_size, accelerator=accelerator, out=accelerator.print,
                             not_paintings=cfg.not_paintings)
    if cfg.evaluate_test and (out / "best").is_dir():
        from tim.evaluation import evaluate_checkpoint, format_summary

        overrides = {"source": cfg.data.source, "cache_dir": cfg.data.cache_dir, "num_proc": cfg.data.num_proc}
        results = evaluate_checkpoint(str(out / "best"), overrides, batch_size=cfg.batch_size,
                                      accelerator=accelerator)
        accelerator.print(format_summary(results))
    push_error = publish(out / "best", cfg) if cfg.push_to_hub and main else None
    accelerator.wait_for_everyone()
    accelerator.end_training()  # last: it also ends the process group of a distributed run
    if push_error:
        raise push_error  # the run is saved; the message holds the command that retries the push
    return out


# ---------------------------------------------------------------- the run folder


def check_output_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a run over an earlier one (unless `overwrite`), or to resume one that was never saved."""
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite contradict each other: continue the run or replace it, not both.")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--output-dir {out} is a file, not a folder; choose another --output-dir.")
    for name in (STATE, "best", "last"):  # a save interrupted on a file system without atomic swaps
        try:
            recover_folder(out / name)
        except OSError:
            pass  # another rank of the same run recovered it first
    found = [name for name in RUN_FILES if (out / name).exists()]
    if resume and not (out / STATE).is_dir():
        hint = f" It holds {', '.join(found)}: add --overwrite to replace them." if found else ""
        raise RunFolderError(
            f"--resume: nothing to resume in {out}: no {STATE}/ folder (a run saves one at the end of each epoch). "
            f"Start the run without --resume.{hint}"
        )
    if found and not resume and not overwrite:
        raise RunFolderError(
            f"--output-dir {out} already holds a run ({', '.join(found)}). Continue it with --resume, replace it "
            "with --overwrite, or choose another --output-dir."
        )


def start_run(out: Path, cfg: TrainConfig, overwrite: bool) -> None:
    """A fresh run folder: the earlier run's files removed (only with --overwrite), the config in run.json."""
    if overwrite:
        for name in RUN_FILES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps(cfg.to_dict(), indent=2))


def save_epoch(accelerator: Accelerator, model, out: Path, row: dict, improved: bool, artists: list[str],
               preprocessing: dict, extra: dict) -> None:
    """Save an epoch: last/ (and best/ when it improved), then the state with the epoch's log row.

    Each folder is replaced whole (tim.checkpoint.save_checkpoint), and state/ goes last: it is what
    --resume continues from, so a run killed before it repeats this epoch, after it goes on.
    """
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        save_checkpoint(unwrapped, out / "last", artists, preprocessing, extra)
        if improved:
            save_checkpoint(unwrapped, out / "best", artists, preprocessing, extra)
    save_state(accelerator, out, row)


def save_state(accelerator: Accelerator, out: Path, row: dict) -> None:
    """Save the training state with the log up to this epoch, as one folder that replaces state/ in one step.

    A process killed anywhere in here leaves state/ and its log.csv at the previous epoch (which
    --resume repeats) or at this one: never an epoch logged twice or saved without its row.
    """
    staging = out / f".{STATE}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(staging))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            previous = out / STATE / LOG_NAME
            if not previous.is_file():  # the first epoch, or a run saved before the log moved into state/
                previous = out / LOG_NAME
            log = io.StringIO()
            log.write(previous.read_text() if previous.is_file() else "")
            writer = csv.DictWriter(log, LOG_COLUMNS)
            if log.tell() == 0:
                writer.writeheader()
            writer.writerow(row)
            (staging / LOG_NAME).write_text(log.getvalue())
            replace_folder(staging, out / STATE)
            restore_log(out)
    finally:  # after a failed save (a full disk), state/ is the previous epoch's and nothing half-written stays
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()


def restore_log(out: Path, epoch: int | None = None) -> None:
    """Make RUN/log.csv the log saved with the training state (the one that matches the saved epochs).

    A run saved by an older Tim has no log in state/: its log.csv keeps the first row of each epoch
    up to `epoch`, the last one the state holds (a row written just before a kill is dropped).
    """
    saved = out / STATE / LOG_NAME
    if saved.is_file():
        write_text_atomically(out / LOG_NAME, saved.read_text())
    elif epoch is not None and (out / LOG_NAME).is_file():
        rows = {}
        for row in csv.DictReader(io.StringIO((out / LOG_NAME).read_text())):
            rows.setdefault(int(row["epoch"]), row)
        log = io.StringIO()
        writer = csv.DictWriter(log, LOG_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(row for e, row in sorted(rows.items()) if e <= epoch)
        write_text_atomically(out / LOG_NAME, log.getvalue())


def publish(checkpoint: Path, cfg: TrainConfig):
    """Push the best checkpoint; None, or the HubError (with the command that retries) of a failed upload."""
    from tim.hub import HubError, push_checkpoint

    try:
        url = push_checkpoint(checkpoint, cfg.hub_model_id, private=cfg.hub_private)
    except HubError as e:
        return HubError(f"training finished and {checkpoint} is saved, but {e}")
    print(f"Pushed {checkpoint} to {url}")
    return None


def _recipe(cfg: TrainConfig) -> dict:
    """The training settings worth keeping with the weights (for the model card and for comparisons)."""
    d = cfg.to_dict()
    for k in ("data", "output_dir", "num_workers", "report_to", "push_to_hub", "hub_model_id", "hub_private",
              "max_steps_per_epoch", "evaluate_test"):
        d.pop(k)
    return d
