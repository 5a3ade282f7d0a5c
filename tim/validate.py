"""Checking a checkpoint before it is loaded: a checkpoint from the Hub (or a Space's TIM_MODELS) is someone else's input.

`validate_checkpoint(folder)` runs every check in CHECKS, in order, before a model is built or an
image is read. Each check is one small function about one part of the checkpoint; the first problem
raises one CheckpointError whose message names the file, the field, the value found and what is
expected, which every command prints as its one `error:` line (the app shows it as the model's reason).

    config.json     a JSON object (tim.checkpoint.read_config), then
      check_schema         architecture (a timm model), num_classes (an int), label_names (that many strings),
                           model_args and pretrained_cfg (objects; mean/std three finite numbers, std > 0;
                           input_size three whole numbers; interpolation one timm knows)
      check_preprocessing  tim.preprocessing: image_size an int in 32-1024, resize_mode, pad_color
    model.safetensors
      check_weights_file   a safetensors file inside the folder (never a pickle: it is never unpickled)
      check_model          the architecture built from config.json on the meta device (no memory, no weights)
      check_labels         the classifier's rows in the file = num_classes = len(label_names)
      check_architecture   every tensor the architecture needs, with its shape, and nothing else
      check_finite         no NaN or infinity in any weight
    tim.calibration        method known, temperature a finite number > 0
    tim.unknown            score known, threshold a finite number, its tensor file inside the folder with
                           the keys and shapes its score reads (tim.openset.statistics_shapes)

An ensemble (config.json tim.ensemble, tim/ensemble.py) is checked as a whole (ENSEMBLE_CHECKS): its own
config.json as above without architecture and weights, then every member folder named in tim.ensemble.members
(inside the folder, no absolute path, no '..', no link out) is checked as a single checkpoint with every check
above, and must have the ensemble's labels (same order), preprocessing and normalisation; the unknown-artist and
not-a-painting files are checked against the members' joined features.

Unknown extra keys are allowed (newer Tims add blocks). A new section is one more function in
CHECKS; a section with its own tensors calls `tensor_file` ("a file named in config, inside the
folder, holding these keys with these shapes, all finite").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors import safe_open

from tim.calibration import METHODS
from tim.checkpoint import (
    COMBINE,
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    check_weights,
    ensemble_members,
    inside,
    is_ensemble,
    read_config,
    shorten,
)
from tim.images import RESIZE_MODES
from tim.models import texture_size
from tim.openset import SCORES, statistics_shapes
from tim.painting import INPUTS_ALLOWED

IMAGE_SIZES = (32, 1024)  # pixels a square input may have: below, no model family sees a painting; above, memory
MAX_CLASSES = 100_000
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")  # what timm's transforms accept
_MISSING = object()


@dataclass
class Checkpoint:
    """What the checks read and fill in: the folder, its config, then the weights' header and the meta model."""

    folder: Path
    config: dict
    weights: dict[str, tuple] = field(default_factory=dict)  # tensor name -> shape, from the safetensors header
    model: torch.nn.Module | None = None  # the architecture on the meta device
    replacing: tuple[str, ...] = ()  # config blocks the caller is about to rewrite (`tim calibrate`): not checked
    features: int | None = None  # an ensemble's joined pooled features (set by check_members)
    texture: int | None = None  # an ensemble's joined texture statistics (set by check_members)

    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG_NAME

    @property
    def weights_path(self) -> Path:
        return self.folder / WEIGHTS_NAME

    def get(self, dotted: str):
        """config["a"]["b"] for "a.b"; _MISSING where a part is absent (or its parent is not an object)."""
        value = self.config
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                return _MISSING
            value = value[part]
        return value

    def fail(self, dotted: str, value, expected: str) -> CheckpointError:
        return CheckpointError(f"{self.config_path} {dotted} {_found(value)}: expected {expected}.")


def _found(value) -> str:
    return "missing" if value is _MISSING else f"= {shorten(value)}"


def validate_checkpoint(folder, replacing: tuple[str, ...] = ()) -> dict:
    """The checkpoint's config once every check passes; CheckpointError (one line) at the first problem.

    replacing: blocks ("tim.calibration", "tim.unknown") the caller rewrites, left unchecked so that
    `tim calibrate` can repair a checkpoint whose old statistics are broken.
    """
    return _checked(folder, replacing).config


def _checked(folder, replacing: tuple[str, ...] = ()) -> Checkpoint:
    checkpoint = Checkpoint(Path(folder), read_config(folder), replacing=tuple(replacing))
    for check in ENSEMBLE_CHECKS if is_ensemble(checkpoint.config) else CHECKS:
        check(checkpoint)
    return checkpoint


# ---------------------------------------------------------------- value helpers


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def require_int(c: Checkpoint, dotted: str, low: int, high: int, what: str = "") -> int:
    value = c.get(dotted)
    if not is_int(value) or not low <= value <= high:
        raise c.fail(dotted, value, f"a whole number from {low} to {high}{what}")
    return value


def require_number(c: Checkpoint, dotted: str, positive: bool = False, optional: bool = False):
    value = c.get(dotted)
    if optional and value is _MISSING:
        return None
    if not is_number(value) or (positive and value <= 0):
        raise c.fail(dotted, value, "a finite number above 0" if positive else "a finite number")
    return value


def require_object(c: Checkpoint, dotted: str, optional: bool = False) -> dict | None:
    value = c.get(dotted)
    if optional and value is _MISSING:
        return None
    if not isinstance(value, dict):
        raise c.fail(dotted, value, "a JSON object")
    return value


def read_header(path: Path, what: str) -> dict[str, tuple]:
    """{tensor name: shape} from a safetensors file's header (no tensor data read); CheckpointError if it is not one."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors reports garbage, pickles and empty files in its own words
        size = path.stat().st_size if path.is_file() else 0
        kind = "an empty file" if size == 0 else "a pickle" if _is_pickle(path) else f"{size:,} bytes of something else"
        raise CheckpointError(f"{path}: not a safetensors file ({kind}: {str(e).strip() or type(e).__name__}); "
                              f"{what} must be saved with safetensors (re-save or re-download it).") from None


def _is_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:1] == b"\x80" or head.startswith(b"PK\x03\x04")  # protocol 2+ pickle, or torch.save's zip


def check_finite_tensors(path: Path, names) -> None:
    """CheckpointError naming the first tensor of `names` in `path` with a NaN or an infinity."""
    with safe_open(str(path), framework="pt") as f:
        for name in names:
            tensor = f.get_tensor(name)
            if not _all_finite(tensor):
                bad = int((~torch.isfinite(tensor.float())).sum())
                raise CheckpointError(f"{path}: tensor {name!r} holds {bad:,} NaN or infinite values of "
                                      f"{tensor.numel():,}; expected finite numbers (the training diverged, or "
                                      "the file is damaged).")


def _all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or infinity in `tensor`. Through numpy (one thread): torch.isfinite opens an OpenMP region per tensor,
    which on a busy 2-core CPU made this check 80-1800 ms for Lite0's 296 tensors instead of about 20 ms."""
    if not tensor.is_floating_point():
        return True
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: all-ones exponent bits mean inf or NaN
        return bool(((tensor.view(torch.int16).numpy() & 0x7F80) != 0x7F80).all())
    if tensor.dtype in (torch.float16, torch.float32, torch.float64):
        return bool(np.isfinite(tensor.numpy()).all())
    return bool(torch.isfinite(tensor.float()).all())


def _shape_ok(got: tuple, want: tuple) -> bool:
    return len(got) == len(want) and all(w == g if w is not None else g >= 1 for g, w in zip(got, want))


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"


def tensor_file(c: Checkpoint, dotted: str, shapes: dict[str, tuple]) -> Path:
    """The tensor file named by config field `dotted`: inside the folder, a safetensors file holding exactly
    the tensors `shapes` names with those shapes (None: any length >= 1), all finite."""
    path = inside(c.folder, c.get(dotted), dotted)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; {c.config_path} {dotted} names it.")
    header = read_header(path, dotted)
    missing, extra = sorted(set(shapes) - set(header)), sorted(set(header) - set(shapes))
    if missing or extra:
        raise CheckpointError(f"{path}: holds tensors {sorted(header)}; expected exactly {sorted(shapes)} "
                              f"for {c.config_path} {dotted.rsplit('.', 1)[0]}.")
    for name, want in shapes.items():
        if not _shape_ok(header[name], want):
            raise CheckpointError(f"{path}: tensor {name!r} has shape {_shape_text(header[name])}; expected "
                                  f"{_shape_text(want)} for this model.")
    check_finite_tensors(path, shapes)
    return path


# ---------------------------------------------------------------- the checks, in order


def check_schema(c: Checkpoint) -> None:
    arch = c.get("architecture")
    if not isinstance(arch, str) or not timm.is_model(arch):
        raise c.fail("architecture", arch, f"the name of a timm model (timm {timm.__version__})")
    check_fields(c)


def check_fields(c: Checkpoint) -> None:
    """num_classes, label_names, model_args, pretrained_cfg and the tim block (all but the architecture)."""
    classes = require_int(c, "num_classes", 1, MAX_CLASSES, " (the classifier's outputs)")
    labels = c.get("label_names")
    if not isinstance(labels, list) or not all(isinstance(a, str) and a for a in labels):
        raise c.fail("label_names", labels, "a list of artist names (strings)")
    if len(labels) != classes:
        raise c.fail("label_names", labels, f"{classes} names, one per classifier output (num_classes), "
                                            f"not {len(labels)}")
    if len(set(labels)) != len(labels):
        twice = sorted({a for a in labels if labels.count(a) > 1})
        raise c.fail("label_names", twice, "each artist once")
    args = require_object(c, "model_args", optional=True)
    if args is not None and "num_classes" in args and args["num_classes"] != classes:
        raise c.fail("model_args.num_classes", args["num_classes"], f"num_classes ({classes}) or no entry")
    require_object(c, "pretrained_cfg", optional=True)
    for name in ("mean", "std"):
        value = c.get(f"pretrained_cfg.{name}")
        if value is _MISSING:
            continue
        if not (isinstance(value, list) and len(value) == 3 and all(is_number(v) for v in value)
                and (name == "mean" or all(v > 0 for v in value))):
            raise c.fail(f"pretrained_cfg.{name}", value, "three finite numbers (one per colour channel)"
                                                          + (", each above 0" if name == "std" else ""))
    size = c.get("pretrained_cfg.input_size")
    if size is not _MISSING and not (isinstance(size, list) and len(size) == 3
                                     and all(is_int(v) and 1 <= v <= 100_000 for v in size)):
        raise c.fail("pretrained_cfg.input_size", size, "[channels, height, width], three whole numbers")
    interpolation = c.get("pretrained_cfg.interpolation")
    if interpolation is not _MISSING and interpolation not in INTERPOLATIONS:
        raise c.fail("pretrained_cfg.interpolation", interpolation, f"one of {', '.join(INTERPOLATIONS)}")
    require_object(c, "tim")
    if c.get("tim.preprocessing") is _MISSING:
        raise CheckpointError(f"{c.config_path}: no 'tim.preprocessing' block; was this checkpoint written by Tim?")
    require_object(c, "tim.preprocessing")


def check_preprocessing(c: Checkpoint) -> None:
    require_int(c, "tim.preprocessing.image_size", *IMAGE_SIZES, " (pixels)")
    mode = c.get("tim.preprocessing.resize_mode")
    if mode not in RESIZE_MODES:
        raise c.fail("tim.preprocessing.resize_mode", mode, f"one of {', '.join(RESIZE_MODES)}")
    colour = c.get("tim.preprocessing.pad_color")
    if colour is not _MISSING and not (isinstance(colour, list) and len(colour) == 3
                                       and all(is_int(v) and 0 <= v <= 255 for v in colour)):
        raise c.fail("tim.preprocessing.pad_color", colour, "[r, g, b], three whole numbers from 0 to 255")


def check_weights_file(c: Checkpoint) -> None:
    path = inside(c.folder, WEIGHTS_NAME)
    check_weights(c.folder)  # missing, or pickles only: says so (a pickle is never opened)
    c.weights = read_header(path, "the weights")


def check_model(c: Checkpoint) -> None:
    """Build the architecture as timm will (config.json's model_args and pretrained_cfg), on the meta device."""
    try:
        with torch.device("meta"):
            c.model = timm.create_model(f"local-dir:{c.folder.resolve()}", pretrained=False)
    except Exception as e:  # noqa: BLE001 - timm refuses bad arguments with TypeError, ValueError, AssertionError...
        raise c.fail("model_args", c.get("model_args"), f"settings timm's {c.config['architecture']} accepts in "
                     f"model_args and pretrained_cfg ({type(e).__name__}: {str(e).strip()[:200]})") from None


def classifier_weight(c: Checkpoint) -> str | None:
    """The name of the classifier's weight in the state dict ("classifier.weight", "fc.weight", "head.fc.weight")."""
    names = (c.model.pretrained_cfg or {}).get("classifier") or ()
    for name in [names] if isinstance(names, str) else names:
        if f"{name}.weight" in c.weights:
            return f"{name}.weight"
    return None


def check_labels(c: Checkpoint) -> None:
    weight = classifier_weight(c)
    if weight is None:
        return  # no classifier where timm puts one: check_architecture names what is missing
    rows = c.weights[weight][0]
    if rows != c.config["num_classes"]:
        raise CheckpointError(f"{c.config_path} num_classes = {c.config['num_classes']} and "
                              f"{len(c.config['label_names'])} label_names, but the classifier in "
                              f"{c.weights_path} ({weight}) has {rows} outputs; expected one label per output.")


def check_architecture(c: Checkpoint) -> None:
    needed = {name: tuple(t.shape) for name, t in c.model.state_dict().items()}
    missing, extra = sorted(set(needed) - set(c.weights)), sorted(set(c.weights) - set(needed))
    arch = c.config["architecture"]
    if missing or extra:
        parts = [f"{_count(missing)} {arch} needs missing (e.g. {', '.join(missing[:3])})" if missing else "",
                 f"{_count(extra)} it has no place for (e.g. {', '.join(extra[:3])})" if extra else ""]
        raise CheckpointError(f"{c.weights_path}: not weights of {c.config_path} architecture {arch!r}: "
                              f"{'; '.join(p for p in parts if p)}. The config and the weights must come "
                              "from the same model.")
    wrong = [name for name in needed if tuple(c.weights[name]) != needed[name]]
    if wrong:
        name = wrong[0]
        raise CheckpointError(f"{c.weights_path}: tensor {name!r} has shape {c.weights[name]}; {arch} with "
                              f"config.json's settings expects {needed[name]} ({_count(wrong)} differ). "
                              "The config and the weights must come from the same model.")


def _count(names) -> str:
    return f"{len(names)} tensor{'s' * (len(names) != 1)}"


def check_finite(c: Checkpoint) -> None:
    check_finite_tensors(c.weights_path, c.weights)


def check_calibration(c: Checkpoint) -> None:
    if c.get("tim.calibration") in (_MISSING, None, {}) or "tim.calibration" in c.replacing:
        return  # none: plain softmax
    require_object(c, "tim.calibration")
    method = c.get("tim.calibration.method")
    if method not in METHODS:
        raise c.fail("tim.calibration.method", method, f"one of {', '.join(METHODS)}")
    require_number(c, "tim.calibration.temperature", positive=True, optional=True)
    for name in ("slope", "center"):
        require_number(c, f"tim.calibration.{name}", optional=True)


def feature_size(c: Checkpoint) -> int:
    """Length of the pooled features the unknown-artist statistics are computed on (the classifier's input)."""
    if c.features is not None:
        return c.features
    weight = classifier_weight(c)
    if weight is not None and len(c.weights[weight]) == 2:
        return c.weights[weight][1]
    return int(c.model.num_features)


def check_unknown(c: Checkpoint) -> None:
    if c.get("tim.unknown") in (_MISSING, None, {}) or "tim.unknown" in c.replacing:
        return  # none: every answer is one of the model's artists
    require_object(c, "tim.unknown")
    score = c.get("tim.unknown.score")
    if score not in SCORES:
        raise c.fail("tim.unknown.score", score, f"one of {', '.join(SCORES)}")
    require_number(c, "tim.unknown.threshold")
    shapes = statistics_shapes(score, c.config["num_classes"], feature_size(c))
    if c.get("tim.unknown.file") in (_MISSING, None, ""):
        if shapes:
            raise c.fail("tim.unknown.file", c.get("tim.unknown.file"),
                         f"the file with the {score} statistics (unknown.safetensors; rerun `tim calibrate`)")
        return
    tensor_file(c, "tim.unknown.file", shapes)


def check_painting(c: Checkpoint) -> None:
    """tim.painting ("this doesn't look like a painting", tim.painting): a finite threshold and its head."""
    if c.get("tim.painting") in (_MISSING, None, {}) or "tim.painting" in c.replacing:
        return  # none: every picture counts as a painting
    require_object(c, "tim.painting")
    require_number(c, "tim.painting.threshold")
    inputs = c.get("tim.painting.inputs")
    if inputs is _MISSING:
        inputs = ["features"]  # a head fitted before it could read texture
    if inputs not in INPUTS_ALLOWED:
        raise c.fail("tim.painting.inputs", inputs, '["features", "texture"] as `tim calibrate --not-paintings DIR` '
                     'writes it (rerun it), or ["features"] for a head fitted before texture')
    d = feature_size(c)
    if "texture" in inputs:
        texture = c.texture if c.texture is not None else texture_size(c.model)
        if not texture:
            raise CheckpointError(f"{c.config_path}: tim.painting reads texture statistics, but "
                                  f"{c.config['architecture']} has no stages in timm's feature_info to read them "
                                  "from; rerun `tim calibrate --not-paintings DIR`.")
        d += texture
    tensor_file(c, "tim.painting.file", {"mean": (d,), "scale": (d,), "coef": (2, d), "intercept": (2,)})


def feature_map_shape(c: Checkpoint, image_size: int) -> tuple:
    """The shape of one picture's `forward_features` output, from the meta model (no memory, no weights)."""
    try:
        with torch.device("meta"):
            return tuple(c.model.forward_features(torch.empty(1, 3, image_size, image_size)).shape[1:])
    except Exception as e:  # noqa: BLE001 - an architecture that cannot run at this size says so in its own words
        raise CheckpointError(f"{c.config_path}: {c.config['architecture']} cannot run at {image_size} px "
                              f"({type(e).__name__}: {str(e).strip()[:200]}).") from None


def check_members(c: Checkpoint) -> None:
    """Each member of an ensemble: a complete single checkpoint inside the folder, on the ensemble's artists
    (same order), preprocessing and normalisation, with a convolutional feature map the size of the others'."""
    combine = c.get("tim.ensemble.combine")
    if combine != COMBINE:
        raise c.fail("tim.ensemble.combine", combine, f"{COMBINE!r}")
    sizes, maps, textures = [], [], []
    for folder in ensemble_members(c.folder, c.config):
        if is_ensemble(read_config(folder)):
            raise CheckpointError(f"{folder / CONFIG_NAME}: a member of the ensemble {c.folder} is itself an "
                                  "ensemble; expected a single model (list its members in the outer ensemble).")
        member = _checked(folder)
        for dotted in ("label_names", "tim.preprocessing", "pretrained_cfg.mean", "pretrained_cfg.std"):
            if member.get(dotted) != c.get(dotted):
                raise CheckpointError(f"{member.config_path} {dotted} {_found(member.get(dotted))} differs from "
                                      f"{c.config_path} {dotted} {_found(c.get(dotted))}; every member of an "
                                      f"ensemble must have the ensemble's {dotted.rsplit('.', 1)[-1]}.")
        sizes.append(feature_size(member))
        textures.append(texture_size(member.model))
        maps.append(feature_map_shape(member, c.config["tim"]["preprocessing"]["image_size"]))
        if len(maps[-1]) != 3 or maps[-1][0] != member.model.num_features or maps[-1][1:] != maps[0][1:]:
            raise CheckpointError(f"{member.config_path}: {member.config['architecture']}'s last feature map is "
                                  f"{_shape_text(maps[-1])} at {c.config['tim']['preprocessing']['image_size']} px, "
                                  f"the first member's {_shape_text(maps[0])}; an ensemble joins convolutional "
                                  "feature maps (num_features channels) of one size.")
    c.features = sum(sizes)
    c.texture = sum(textures) if all(textures) else 0


CHECKS = [check_schema, check_preprocessing, check_weights_file, check_model, check_labels, check_architecture,
          check_finite, check_calibration, check_unknown, check_painting]
# an ensemble has no architecture or weights of its own: its members are checked with CHECKS
ENSEMBLE_CHECKS = [check_fields, check_preprocessing, check_members, check_calibration, check_unknown, check_painting]
