"""The model card (README.md) of a checkpoint, generated from what the checkpoint itself records.

Everything on the card comes from CHECKPOINT/config.json (architecture, artists,
preprocessing, data and training recipe) and, when `tim evaluate` has run,
CHECKPOINT/eval_results.json (test metrics with bootstrap intervals, per-artist
scores) and confusion_matrix.png. Nothing is typed by hand, so the card cannot
drift from the weights it describes. The test metrics also go into the card's
`model-index` metadata, which the Hub shows as evaluation results.

An ensemble (tim/ensemble.py) gets one card: the whole is described as one model, each member's
origin and training recipe under Training, and "How to use" loads the members with plain timm
(the transformers pipeline reads single models only).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from tim.checkpoint import (
    CONFUSION_NAME,
    CURVES_NAME,
    EVAL_RESULTS_NAME,
    RELIABILITY_NAME,
    UNKNOWN_HISTOGRAM_NAME,
    CheckpointError,
    ensemble_members,
    read_config,
)
from tim.plots import display_name

CARD_NAME = "README.md"
PLACEHOLDER_REPO = "USER/NAME"


def read_eval_results(folder: str | os.PathLike) -> dict | None:
    """CHECKPOINT/eval_results.json (written by tim.evaluation), or None when the checkpoint was not evaluated."""
    path = Path(folder) / EVAL_RESULTS_NAME
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); re-run `tim evaluate` to rewrite it.") from None
    if not isinstance(results.get("metrics"), dict):
        raise CheckpointError(f"{path}: no 'metrics' block; re-run `tim evaluate` to rewrite it.")
    return results


def metric_label(key: str) -> tuple[str, str | None, str]:
    """("f1", "macro", "F1 (macro)") for "f1_macro": the metric type, its averaging and a display name."""
    kind, _, average = key.partition("_")
    title = "F1" if kind == "f1" else kind.capitalize()
    return kind, average or None, f"{title} ({average})" if average else title


def write_card(folder: str | os.PathLike, repo_id: str | None = None) -> Path:
    """Write (or refresh) CHECKPOINT/README.md; atomic, so an interrupted write never leaves half a card."""
    folder = Path(folder)
    card = build_card(folder, repo_id)
    path = folder / CARD_NAME
    tmp = folder / f".{CARD_NAME}.tmp{os.getpid()}"
    tmp.write_text(str(card), encoding="utf-8")
    os.replace(tmp, path)
    return path


def build_card(folder: str | os.PathLike, repo_id: str | None = None) -> ModelCard:
    """The model card for the checkpoint in `folder`; `repo_id` fills in the loading examples."""
    folder = Path(folder)
    config = read_config(folder)
    results = read_eval_results(folder)
    tim_block = config["tim"]
    data = (results or {}).get("data") or tim_block.get("data") or {}
    repo = repo_id or PLACEHOLDER_REPO
    name = repo.split("/")[-1] if repo_id else folder.resolve().name

    dataset_id, dataset_label = _dataset(data)
    card_data = ModelCardData(
        model_name=name,
        library_name="timm",
        pipeline_tag="image-classification",
        tags=["image-classification", "timm", "art"],
        license=config.get("pretrained_cfg", {}).get("license"),
        datasets=[dataset_id] if dataset_id else None,
        eval_results=_eval_results(results, dataset_id, dataset_label, data) if results else None,
    )
    sections = [
        f"# {name}\n\n{_summary(config)}",
        _metrics_section(results, tim_block, folder),
        _honesty_section(results, tim_block, folder, len(config["label_names"])),
        _photos_section(results, tim_block),
        _artists_section(config),
        _data_section(data, dataset_id, dataset_label, results),
        _preprocessing_section(config),
        (_members_section(folder, config) if tim_block.get("ensemble")
         else _training_section(tim_block.get("train"), tim_block.get("average"))),
        (_ensemble_usage_section if tim_block.get("ensemble") else _usage_section)(config, repo, repo_id is None),
        _limits_section(config),
    ]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")


# ---------------------------------------------------------------- metadata


def _dataset(data: dict) -> tuple[str | None, str]:
    """(Hub dataset id or None, a readable name) for the data source.

    A local folder is named by its last component only: the card is public, and a
    path like /home/alice/paintings says nothing useful to readers.
    """
    source = str(data.get("source") or "")
    if not source:
        return None, "not recorded"
    looks_local = data.get("kind") in ("imagefolder", "best-artworks") or source.startswith((".", "/", "~"))
    if not looks_local and not os.path.exists(source):
        try:
            validate_repo_id(source)
            return source, source
        except HFValidationError:
            pass
    kind = {"best-artworks": "Kaggle Best Artworks of All Time"}.get(data.get("kind"), "local image folder")
    return None, f"{Path(source).name} ({kind})"


def _eval_results(results: dict, dataset_id: str | None, dataset_label: str, data: dict) -> list[EvalResult]:
    """One model-index entry per test metric; the bootstrap interval travels in the metric's args."""
    bootstrap = results.get("bootstrap") or {}
    entries = []
    for key, metric in results["metrics"].items():
        kind, average, title = metric_label(key)
        args: dict = {"average": average} if average else {}
        if metric.get("low") is not None and metric.get("high") is not None:
            args["confidence_interval"] = {
                "low": metric["low"],
                "high": metric["high"],
                "confidence": bootstrap.get("confidence"),
                "method": "bootstrap",
                "resamples": bootstrap.get("resamples"),
            }
        entries.append(
            EvalResult(
                task_type="image-classification",
                task_name="Painting artist classification",
                dataset_type=dataset_id or "imagefolder",
                dataset_name=dataset_label,
                dataset_split=results.get("split", "test"),
                dataset_args=_split_recipe(data) or None,
                metric_type=kind,
                metric_name=title,
                metric_value=metric["value"],
                metric_args=args or None,
            )
        )
    return entries


def _split_recipe(data: dict) -> dict:
    keys = ("fractions", "seed", "duplicate_distance", "min_images")
    return {k: list(data[k]) if isinstance(data[k], (list, tuple)) else data[k] for k in keys if k in data}


# ---------------------------------------------------------------- sections


def _summary(config: dict) -> str:
    arch = config["architecture"]
    ensemble = config["tim"].get("ensemble")
    if ensemble:
        return (
            f"Recognises which of {config['num_classes']} artists painted a picture. An {arch}: "
            f"{len(ensemble['members'])} fine-tuned [timm](https://github.com/huggingface/pytorch-image-models) "
            "models trained on the same artists and data, answering as one model with the mean of their "
            "probabilities (one calibration, one unknown-artist and one not-a-painting decision for the whole). "
            "Trained with Tim, an open-source painting-artist classifier. This card was generated from the checkpoint."
        )
    return (
        f"Recognises which of {config['num_classes']} artists painted a picture. A fine-tuned "
        f"[timm](https://github.com/huggingface/pytorch-image-models) `{arch}`, trained with Tim, an open-source "
        "painting-artist classifier. This card was generated from the checkpoint."
    )


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def _metrics_section(results: dict | None, tim_block: dict, folder: Path) -> str:
    if results is None:
        lines = [
            "## Evaluation",
            "",
            "This checkpoint was **not evaluated** on a held-out test split (`tim evaluate` has not run on it), "
            "so there are no test metrics. Treat its quality as unknown.",
        ]
        recorded = tim_block.get("metrics") or {}
        if recorded:
            lines += ["", "Numbers recorded in the checkpoint at training time (not test metrics):", ""]
            lines += [f"- {k}: {v}" for k, v in recorded.items()]
        return "\n".join(lines)

    boot = results.get("bootstrap") or {}
    confidence = boot.get("confidence")
    interval = f"{confidence:.0%} interval" if confidence else "interval"
    lines = [
        "## Evaluation",
        "",
        f"On the held-out **{results.get('split', 'test')}** split ({results.get('num_images', '?')} images). "
        f"Intervals: bootstrap over the test images ({boot.get('resamples', '?')} resamples, "
        f"seed {boot.get('seed', '?')}).",
        "",
        f"| metric | value | {interval} |",
        "|---|---|---|",
    ]
    for key, m in results["metrics"].items():
        lines.append(f"| {metric_label(key)[2]} | {_fmt(m.get('value'))} | {_fmt(m.get('low'))} – {_fmt(m.get('high'))} |")
    per_artist = results.get("per_artist") or []
    if per_artist:
        lines += ["", "### Per artist", "", "| artist | precision | recall | F1 | test images |", "|---|---|---|---|---|"]
        for row in per_artist:
            lines.append(
                f"| {display_name(row['artist'])} | {_fmt(row.get('precision'))} | {_fmt(row.get('recall'))} | "
                f"{_fmt(row.get('f1'))} | {row.get('support', '–')} |"
            )
    for file, title in ((CONFUSION_NAME, "Confusion matrix"), (CURVES_NAME, "Training curves")):
        if (folder / file).is_file():
            lines += ["", f"### {title}", "", f"![{title.lower()}]({file})"]
    return "\n".join(lines)


def _honesty_section(results: dict | None, tim_block: dict, folder: Path, artists: int) -> str:
    """Calibrated confidence and the unknown-artist decision: what is stored, and what `tim evaluate` measured."""
    cal, unknown = tim_block.get("calibration"), tim_block.get("unknown")
    lines = ["## Confidence and unknown artists", ""]
    if cal:
        fitted = cal.get("fitted_on") or {}
        lines.append(f"- Confidence is calibrated (`{cal['method']}`, temperature {cal['temperature']:.3f}), fitted on "
                     f"{fitted.get('images', '?')} {fitted.get('split', 'validation')} images by `tim calibrate`; "
                     "the top-1 answer is never changed by it.")
    else:
        lines.append("- Confidence is the plain softmax: **not calibrated** (run `tim calibrate`).")
    if unknown:
        lines.append(f"- A picture is answered \"not one of the {artists} artists\" "
                     f"when its unknown-artist score (`{unknown['score']}`) is above {unknown['threshold']:.4f}, "
                     f"a threshold that keeps {unknown.get('retention', 0.95):.0%} of the validation paintings.")
        if unknown.get("fit_artists"):
            lines.append(f"- Fitted with paintings of {len(unknown['fit_artists'])} other artists "
                         f"(`{unknown.get('unknown_dir')}`); {len(unknown.get('report_artists') or [])} more were "
                         "held out for the measurement below.")
    else:
        lines.append("- No unknown-artist decision: every picture is named as one of the model's artists.")
    rc = (results or {}).get("calibration")
    if rc:
        lines += ["", f"On the {results.get('split', 'test')} split: expected calibration error ({rc['bins']} bins) "
                      f"**{rc['ece_before']:.3f}** before calibration, **{rc['ece_after']:.3f}** after; mean "
                      f"confidence {rc['mean_confidence_before']:.3f} → {rc['mean_confidence_after']:.3f}."]
    ru = (results or {}).get("unknown")
    if ru:
        lines += ["", f"Paintings by artists the model never saw ({ru['unknown_images']} paintings, {ru['note']}) "
                      f"against the {ru['known_images']} {results.get('split', 'test')} paintings:", "",
                  "| measure | value |", "|---|---|",
                  f"| AUROC known vs unknown | {ru['auroc']:.3f} |",
                  f"| unknown paintings rejected | {ru['unknown_rejected']:.1%} |",
                  f"| known paintings kept | {ru['known_kept']:.1%} |",
                  f"| open-set accuracy | {ru['open_set_accuracy']:.3f} |"]
    for file, title in ((RELIABILITY_NAME, "Reliability diagram"), (UNKNOWN_HISTOGRAM_NAME, "Unknown-artist score")):
        if (folder / file).is_file():
            lines += ["", f"### {title}", "", f"![{title.lower()}]({file})"]
    return "\n".join(lines)


def _photos_section(results: dict | None, tim_block: dict) -> str:
    """Finding the painting in a photo, and "this doesn't look like a painting": what is stored and measured."""
    painting = tim_block.get("painting")
    lines = ["## Photos, and pictures that are not paintings", "",
             "Tim finds the paintings in a picture (a photo of a wall: each painting, largest first; a scan or a "
             "tight crop: the picture whole), straightens each one and answers it on its own."]
    if painting:
        held = painting.get("held_out") or {}
        photos = held.get("validation_photos_rejected") or {}
        reads = "pooled features and texture statistics" if "texture" in (painting.get("inputs") or []) else "features"
        lines += ["", f"A picture is answered \"This doesn't look like a painting\" when its painting score (a "
                      f"logistic head on the model's {reads}, `painting.safetensors`) is under "
                      f"{painting['threshold']:.4f}, a threshold that lets {painting.get('retention', 0.99):.0%} of "
                      f"the validation scans pass. Fitted on paintings (training scans, simulated phone photos of "
                      f"them, other artists) against {len(painting.get('fit_classes') or [])} classes of "
                      f"`{painting.get('not_paintings_dir')}`; measured on the "
                      f"{len(painting.get('report_classes') or [])} classes held out:", "",
                  "| pictures | answered \"doesn't look like a painting\" |", "|---|---|"]
        if "not_paintings_rejected" in held:
            lines.append(f"| non-painting photos, held-out classes ({held['not_paintings_pictures']}) | "
                         f"{held['not_paintings_rejected']:.1%} |")
        if "validation_scans_rejected" in held:
            lines.append(f"| validation scans ({held['validation_scans']}) | {held['validation_scans_rejected']:.1%} |")
        for style, value in photos.items():
            lines.append(f"| simulated {style} photos of validation paintings ({held.get('validation_photos_per_style')})"
                         f" | {value:.1%} |")
        rp = (results or {}).get("painting") or {}
        if "scans_rejected" in rp:
            lines.append(f"| {results.get('split', 'test')} scans ({rp['scans']}) | {rp['scans_rejected']:.1%} |")
        if "painting_photos_rejected" in rp:
            lines.append(f"| real gallery photos of paintings ({rp['painting_photos']}, a check) | "
                         f"{rp['painting_photos_rejected']:.1%} |")
    else:
        lines += ["", "- No not-a-painting decision: every picture is answered as a painting (run `tim calibrate "
                      "--not-paintings DIR`)."]
    ph = (results or {}).get("photos")
    if ph:
        split, clean = results.get("split", "test"), results["metrics"]["accuracy"]["value"]
        sample = "accuracy_clean" in ph and ph["images"] < results.get("num_images", 0)
        beside = (f"{ph['accuracy_clean']:.3f} on the same paintings as clean scans ({clean:.3f} on the whole "
                  f"{split} split)" if sample else f"{clean:.3f} on the clean scans")
        lines += ["", f"Accuracy on {ph['images']} {split} paintings as Tim's simulated phone photos (seed "
                      f"{ph['seed']}), beside {beside}:", "",
                  "| photos | whole photo | painting located | perfectly cropped |", "|---|---|---|---|"]
        for style in ("phone", "oblique"):
            r = ph[style]
            lines.append(f"| {style} | {r['accuracy_whole']:.3f} | {r['accuracy_located']:.3f} | "
                         f"{r['accuracy_cropped']:.3f} |")
    return "\n".join(lines)


def _artists_section(config: dict) -> str:
    names = config["label_names"]
    return f"## Artists ({len(names)})\n\n" + "\n".join(
        f"{i}. {display_name(n)}" + (f" (`{n}`)" if display_name(n) != n else "") for i, n in enumerate(names)) + (
        "\n\nThe class index is the position in this list (`label_names` in config.json, the key in brackets)."
    )


def _data_section(data: dict, dataset_id: str | None, dataset_label: str, results: dict | None) -> str:
    if not data:
        return "## Data\n\nThe data recipe was not recorded in this checkpoint."
    source = f"[{dataset_id}](https://huggingface.co/datasets/{dataset_id})" if dataset_id else dataset_label
    fractions = data.get("fractions") or ()
    lines = ["## Data", "", f"- Source: {source}"]
    if data.get("drop_labels"):
        lines.append(f"- Dropped labels: {', '.join(data['drop_labels'])}")
    if data.get("artists"):
        lines.append("- Restricted to the artists listed above")
    if data.get("min_images") is not None:
        lines.append(f"- Artists kept: those with at least {data['min_images']} usable images")
    if len(fractions) == 3:
        train, val, test = (f"{f:.0%}" for f in fractions)
        lines.append(f"- Split: train {train} / validation {val} / test {test}, stratified by artist, seed {data.get('seed')}")
    distance = data.get("duplicate_distance")
    if distance is not None and distance >= 0:
        lines.append(
            f"- Near-duplicates (perceptual hashes at most {distance} bits apart) are kept within one split, "
            "so the test split holds no copy of a training image"
        )
    if results and results.get("num_images"):
        lines.append(f"- Test images: {results['num_images']}")
    return "\n".join(lines)


def _preprocessing_section(config: dict) -> str:
    pre = config["tim"]["preprocessing"]
    size = pre["image_size"]
    pad = tuple(pre.get("pad_color", (0, 0, 0)))
    if pre["resize_mode"] == "pad":
        how = (
            f"**pad** (letterbox): the whole picture is scaled so its long side is {size} px and centred on a "
            f"{size}×{size} canvas of RGB {pad}; the aspect ratio is kept and nothing is cropped."
        )
    else:
        how = f"**stretch**: the picture is resized to {size}×{size}; the aspect ratio is not kept."
    cfg = config.get("pretrained_cfg", {})
    return (
        f"## Preprocessing\n\n- Squaring: {how}\n- Input: {size}×{size} RGB, bicubic resampling\n"
        f"- Normalisation: mean {cfg.get('mean')}, std {cfg.get('std')}\n\n"
        "Use the same squaring at inference: a model trained on letterboxed paintings sees a stretched one as a "
        "different picture."
    )


def _training_section(train: dict | None, average: dict | None = None) -> str:
    origin = ""
    if isinstance(average, dict):  # tim average: the weights are a mean of others; the recipe shown is the last one's
        parts = [f"{w:.2f} × `{s}`" if isinstance(w, (int, float)) else f"{w} × `{s}`"
                 for s, w in zip(average.get("sources") or [], average.get("weights") or [])]
        origin = ("The weights are the weighted mean (`tim average`) of " + " + ".join(parts)
                  + "; the recipe below is the last one's.\n\n")
    if not train:
        return f"## Training\n\n{origin}The training recipe was not recorded in this checkpoint."
    rows = [f"| {k} | {json.dumps(v) if isinstance(v, (dict, list, tuple)) else v} |" for k, v in train.items()]
    return f"## Training\n\n{origin}| setting | value |\n|---|---|\n" + "\n".join(rows)


def _members_section(folder: Path, config: dict) -> str:
    """An ensemble's training: each member's origin, epochs, recipe and own validation numbers."""
    ensemble = config["tim"]["ensemble"]
    sources = ensemble.get("sources") or []
    lines = ["## Training", "", f"{len(ensemble['members'])} members, each trained on its own (same data and split), "
             f"combined by `{ensemble.get('combine')}`; each member folder is a checkpoint in timm's layout."]
    for i, path in enumerate(ensemble_members(folder, config)):
        member = read_config(path)["tim"]
        origin = f" (from `{sources[i]}`)" if i < len(sources) else ""
        lines += ["", f"### {path.name}{origin}: `{read_config(path).get('architecture')}`", ""]
        if member.get("epoch") is not None:
            lines.append(f"Kept after epoch {member['epoch']}."
                         + "".join(f" Its own {k.replace('_', ' ')}: {v:.3f}." for k, v in
                                   (member.get("validation") or {}).items() if isinstance(v, (int, float))))
            lines.append("")
        lines.append(_training_section(member.get("train"), member.get("average")).split("\n\n", 1)[1])
    return "\n".join(lines)


def _snippet_parts(config: dict, placeholder: bool) -> tuple[str, str, str]:
    """(PIL imports, the letterbox line for `pad` checkpoints, the placeholder note) of the plain-timm examples:
    timm's border mode letterboxes with the mean colour, Tim's bars are the checkpoint's pad colour."""
    pre = config["tim"]["preprocessing"]
    size, pad = pre["image_size"], tuple(pre.get("pad_color", (0, 0, 0)))
    imports, square = "from PIL import Image", ""
    if pre["resize_mode"] == "pad":
        imports = "from PIL import Image, ImageOps"
        square = (f"\nimage = ImageOps.pad(image, ({size}, {size}), method=Image.Resampling.BICUBIC, color={pad})"
                  "  # Tim's letterbox colour")
    note = f"\n\nReplace `{PLACEHOLDER_REPO}` with the repository this checkpoint is pushed to." if placeholder else ""
    return imports, square, note


def _tim_usage(repo: str, api: str = "") -> str:
    """The card's "How to use" heading and its Tim blocks (the command and the Python API), the same for every
    checkpoint; `api` says more about the API where a checkpoint needs it."""
    return f"""## How to use

With Tim's command (a CSV of the artist, its confidence and the top 5, for files and folders; see Tim's README),
or its Python API{api}:

```bash
tim predict painting.jpg --model {repo} --out answers.csv
```

```python
from tim.predictor import Predictor

print(Predictor.load("{repo}").predict(["painting.jpg"])[0])
```"""


def _ensemble_usage_section(config: dict, repo: str, placeholder: bool) -> str:
    """Tim's command and API, and the members averaged with plain timm (transformers reads single models only)."""
    members = config["tim"]["ensemble"]["members"]
    imports, square, note = _snippet_parts(config, placeholder)
    return f"""{_tim_usage(repo, ", which load the ensemble as one model")}

With timm alone: each member ({", ".join(f"`{m}/`" for m in members)}) is a timm checkpoint of its own; the
ensemble's answer is the mean of their probabilities (before Tim's calibration):

```python
import timm, torch
from huggingface_hub import snapshot_download
{imports}

folder = snapshot_download("{repo}")
members = [timm.create_model(f"local-dir:{{folder}}/{{name}}", pretrained=True).eval() for name in {members!r}]
transform = timm.data.create_transform(**timm.data.resolve_data_config(model=members[0]))
image = Image.open("painting.jpg").convert("RGB"){square}
with torch.inference_mode():
    probs = torch.stack([m(transform(image).unsqueeze(0)).softmax(-1)[0] for m in members]).mean(0)
print(members[0].pretrained_cfg["label_names"][int(probs.argmax())], float(probs.max()))
```

🤗 transformers' `pipeline("image-classification")` loads single models only, not this ensemble (it could load
one member's folder, which is not the ensemble's answer).

Tim also turns pictures upright by their EXIF rotation, reads odd image modes, and says when a painting is by
none of the artists it knows (`known`, once calibrated); plain timm gives the closest artist only.{note}"""


def _usage_section(config: dict, repo: str, placeholder: bool) -> str:
    """Three ways to ask the model (tests/test_card_usage.py runs each block as written)."""
    imports, square, note = _snippet_parts(config, placeholder)
    return f"""{_tim_usage(repo)}

With timm alone (the config's `pretrained_cfg` states the preprocessing, the label names are beside it):

```python
import timm, torch
{imports}

model = timm.create_model("hf-hub:{repo}", pretrained=True).eval()
transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
image = Image.open("painting.jpg").convert("RGB"){square}
with torch.inference_mode():
    probs = model(transform(image).unsqueeze(0)).softmax(-1)[0]
print(model.pretrained_cfg["label_names"][int(probs.argmax())], float(probs.max()))
```

With 🤗 transformers (its timm wrapper, transformers >= 4.56):

```python
import torch
from transformers import pipeline

classify = pipeline("image-classification", model="{repo}", dtype=torch.float32)
print(classify("painting.jpg", top_k=3))
```

Tim also turns pictures upright by their EXIF rotation, reads odd image modes, and says when a painting is by
none of the artists it knows (`known`, once calibrated); plain timm and transformers give the closest artist only.{note}"""


def _limits_section(config: dict) -> str:
    n = config["num_classes"]
    notes = "".join(f"\n- {note}" for note in config["tim"].get("notes", []))
    export = config["tim"].get("export")
    if export:
        notes += (f"\n- Weights are stored in {export['dtype']}; their top-1 answers agree with the full-precision "
                  f"checkpoint's on {export['top1_agreement']:.2%} of the {export['checked_on']} split.")
    return f"""## Intended use and limits

Intended for exploring and teaching art history: suggesting which of the {n} listed artists a painting most
resembles, for example in a gallery app or a classroom.

- It names the closest of the {n} artists even for a painting by someone else, a photograph or a drawing
  (marked "not one of the artists" or "doesn't look like a painting" when the decisions above say so). A
  high confidence is not evidence that the painter is among them.
- The test metrics measure images from the same source and of the same kind as training (digitised
  reproductions). Photos taken in a museum, details, or other collections will usually score lower.
- Artists with few training images are recognised less reliably; see the per-artist table when there is one.
- It is not an attribution or authentication tool: do not use it to decide authorship, value, or provenance
  of a work.{notes}"""
