"""One predictor for the app, `tim predict` and `tim evaluate`.

It reads everything about preprocessing from the checkpoint's config (square
mode, size, pad colour, mean/std), so inference sees what training saw.
`explain` adds a Grad-CAM to each prediction from the same forward pass.

Pictures are answered painting by painting (`analyse`): the picture is opened, the paintings in it
are found (tim.locate; none found = the picture is the painting, used whole), each is straightened,
squared and normalised as the checkpoint prescribes, and the model's answer goes through the
calibration, the unknown-artist decision and the not-a-painting decision (tim.painting); Grad-CAM is
drawn on the straightened painting. `predict` / `explain` answer each picture whole, as before.

Numerics: fp32 by default, everywhere, so the answers are the model's on every machine.
On a CPU the forward runs in Tim's ONNX Runtime engine (tim.engine: built on first use,
checked against PyTorch, several times faster than eager); elsewhere, or where the engine
cannot be used, in eager PyTorch. `precision="bf16"` (bf16 autocast, eager) only when asked.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np
import timm
import torch
from PIL import Image

from tim import engine as engines
from tim.data.transforms import eval_transform
from tim.images import DECODE_SCALE, Box, ImageError, ImageSource, _describe, load_rgb, square
from tim.models import TextureTap

# A picture longer than this many times its width (or the reverse) would be a few
# pixels thick in the model's square: refused with a message instead of a meaningless guess.
MAX_ASPECT = 20.0
# Explanations are drawn at most this many pixels on the long side (the original's aspect is kept).
DISPLAY_SIDE = 1024
# A picture to be located is decoded at least this many times the model's size (a JPEG draft), so that a
# painting covering half of a phone photo still has the model's resolution once straightened.
LOCATE_DRAFT = 2
PRECISIONS = ("fp32", "bf16")


@dataclass
class Prediction:
    artist: str
    confidence: float
    top: list[tuple[str, float]]  # top-k (artist, probability), best first
    box: Box | None = None  # where the picture sits in the square the model saw
    extras: dict = field(default_factory=dict)
    known: bool = True  # False: not one of the artists this model knows (`artist` is then only the closest)
    unknown_score: float | None = None  # higher = less like any artist the model knows
    painting: bool = True  # False: the picture doesn't look like a painting (then `known` is False too)
    painting_score: float | None = None  # P(painting) from tim.painting; None: the checkpoint has no such decision
    region: int = 0  # 0: the whole picture; 1, 2, ...: the paintings found in it, largest first
    corners: np.ndarray | None = None  # (4, 2) in the file's pixels, clockwise from top-left; None for region 0


class Outputs(NamedTuple):
    """What the model computes for a batch, float32 on the CPU: raw logits N x K, pooled pre-logit features N x D
    (the classifier's input) and texture statistics N x T (tim.models.TextureTap; T = 0 for a model without)."""

    logits: torch.Tensor
    features: torch.Tensor
    texture: torch.Tensor


class PieceOutputs(NamedTuple):
    """Predictor.piece_outputs: Outputs of every painting found in some pictures (numpy), and the picture of each."""

    logits: np.ndarray
    features: np.ndarray
    texture: np.ndarray
    owner: np.ndarray


@dataclass
class Answers:
    """A batch's answers: calibrated probabilities N x K, unknown-artist scores N, known N (bool),
    painting N (bool) and painting scores N (None without a not-a-painting decision)."""

    probabilities: torch.Tensor
    unknown_score: torch.Tensor
    known: torch.Tensor
    painting: torch.Tensor
    painting_score: torch.Tensor | None = None


@dataclass
class Explanation:
    """A prediction with its Grad-CAM drawn on the original picture (its own aspect ratio, no bars)."""

    prediction: Prediction
    picture: Image.Image  # the original (or the straightened painting), upright RGB, at most DISPLAY_SIDE px
    cam: np.ndarray  # HxW float32 in [0, 1], aligned with `picture`
    overlay: np.ndarray  # HxWx3 uint8: `picture` with the CAM heat map on top
    outlined: Image.Image | None = None  # the whole picture with every painting found outlined (None: used whole)


@dataclass
class Piece:
    """One painting of a picture, ready for the model: the whole picture (region 0) or a straightened region."""

    tensor: torch.Tensor
    box: Box
    picture: Image.Image | None  # what the model saw, before squaring: the original or the straightened painting
    region: int = 0
    corners: np.ndarray | None = None  # in the file's pixels


def _file_pixels(corners: np.ndarray, picture: Image.Image) -> np.ndarray:
    """Corners found in the decoded picture, in the file's own pixels (a JPEG may be draft-decoded)."""
    return np.asarray(corners, dtype=np.float32) * float(picture.info.get(DECODE_SCALE, 1.0))


@dataclass(frozen=True)
class Preprocessor:
    """Source -> (normalised tensor, box, original): picklable, so DataLoader workers can run it."""

    image_size: int
    resize_mode: str
    pad_color: tuple
    transform: Callable

    def open(self, source: ImageSource, draft: int = 1) -> Image.Image:
        """The upright RGB picture (JPEGs draft-decoded near `draft` x the model's size); ImageError for a strip."""
        original = load_rgb(source, draft_size=draft * self.image_size)
        long, short = max(original.size), min(original.size)
        if long > MAX_ASPECT * short:
            raise ImageError(
                f"{_describe(source)}: {original.width}x{original.height} pixels is a {long / short:.0f}:1 strip; "
                f"at {self.image_size}px the model would see a sliver. Crop it to at most {MAX_ASPECT:.0f}:1."
            )
        return original

    def tensor(self, picture: Image.Image) -> tuple[torch.Tensor, Box]:
        squared, box = square(picture, self.image_size, self.resize_mode, self.pad_color)
        return self.transform(squared), box

    def __call__(self, source: ImageSource):
        original = self.open(source)
        return (*self.tensor(original), original)

    def pieces(self, source: ImageSource, whole: bool = False) -> tuple[Image.Image, list[Piece]]:
        """(the picture, a Piece per painting found in it, largest first; or one Piece, the whole picture)."""
        original = self.open(source, 1 if whole else LOCATE_DRAFT)
        return original, self.pieces_of(original, whole)

    def pieces_of(self, picture: Image.Image, whole: bool = False) -> list[Piece]:
        if not whole:
            from tim import locate  # OpenCV only when pictures are located
        rgb = None if whole else locate.rgb_array(picture)  # converted once: located, then straightened
        regions = [] if whole else locate.find_paintings(rgb)
        if not regions:
            return [Piece(*self.tensor(picture), picture)]
        out = []
        for n, corners in enumerate(regions, 1):
            painting = locate.straighten(rgb, corners)
            out.append(Piece(*self.tensor(painting), painting, n, _file_pixels(corners, picture)))
        return out


class Predictor:
    """A loaded model plus the preprocessing its checkpoint config prescribes.

    precision: "fp32" (default: the model's own answers) or "bf16" (autocast; faster on CPUs
    with bf16 units, answers may differ: `tim evaluate --precision bf16` measures by how much).
    engine: "auto" (default, or $TIM_ENGINE): ONNX Runtime for fp32 on a CPU, eager PyTorch
    otherwise; "eager": always PyTorch.
    checkpoint: the model's local folder, where the engine is cached (None: the Tim cache).
    folder: the checkpoint's folder (local or a Hub download), where unknown.safetensors is read.
    """

    # images per engine call: ONNX Runtime runs Lite0 fastest in small batches on a CPU (activations stay in cache)
    ENGINE_BATCH = 1

    def __init__(self, model: torch.nn.Module, config: dict, device: str | torch.device = "cpu",
                 precision: str = "fp32", engine: str | None = None, checkpoint: str | os.PathLike | None = None,
                 folder: str | os.PathLike | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
        from tim.calibration import Calibration
        from tim.openset import UnknownDetector
        from tim.painting import PaintingDetector

        self.config = config
        self.labels: list[str] = list(config["label_names"])
        pre = config["tim"]["preprocessing"]
        data_cfg = timm.data.resolve_data_config(model=model)
        self.transform = eval_transform(data_cfg["mean"], data_cfg["std"])
        self.preprocessor = Preprocessor(int(pre["image_size"]), pre["resize_mode"],
                                         tuple(pre.get("pad_color", (0, 0, 0))), self.transform)
        self.device = torch.device(device)
        self.precision = precision
        self.checkpoint = checkpoint
        # channels_last: 1.8x faster eager convolutions for Lite0 on a 2-core CPU, same fp32 numerics
        self.model = model.float().eval().to(self.device, memory_format=torch.channels_last)
        self.texture = TextureTap(self.model)  # the texture of every eager forward (and Grad-CAM's)
        wants_engine = engines.engine_choice(engine) != "eager" and precision == "fp32" and self.device.type == "cpu"
        self._engine = None if wants_engine and hasattr(model, "forward_head") else False  # False: eager PyTorch
        self._engine_lock = threading.Lock()
        self.calibration = Calibration.from_config(config)  # None: plain softmax
        self.unknown = UnknownDetector.from_checkpoint(config, folder)  # None: every answer is "known"
        self.painting = PaintingDetector.from_checkpoint(config, folder)  # None: every picture is a painting
        self._explainer = None  # tim.gradcam.CamExplainer, built on the first explain()
        self._explainer_lock = threading.Lock()

    @classmethod
    def load(cls, ref: str, **kwargs) -> "Predictor":
        """From a local checkpoint folder or a Hub repo id (see tim.hub.resolve)."""
        from tim.hub import is_hub_ref, open_checkpoint  # Hub layer resolves references, checks safetensors

        model, config, folder = open_checkpoint(ref)
        if not is_hub_ref(ref):  # a Hub download's folder is the Hub's: its engine goes to the Tim cache
            kwargs.setdefault("checkpoint", folder)
        return cls(model, config, folder=folder, **kwargs)

    @property
    def engine(self):
        """The ONNX Runtime engine (tim.engine.OnnxEngine), built or found on first use; None: eager PyTorch."""
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    try:
                        self._engine = engines.load_engine(self.model, str(self.config.get("architecture")),
                                                           self.preprocessor.image_size, self.checkpoint)
                    except Exception as e:  # noqa: BLE001 - export and runtimes fail in many ways; eager is always right
                        print(f"note: {self.config.get('architecture')}: no ONNX Runtime engine "
                              f"({engines.first_line(e)}); using eager PyTorch", file=sys.stderr)
                        self._engine = False
        return self._engine or None

    def autocast(self):
        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def preprocess(self, source: ImageSource):
        """(normalised tensor CxHxW, box, original RGB picture); raises ImageError for bad input."""
        return self.preprocessor(source)

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.to(self.device, memory_format=torch.channels_last)

    @torch.inference_mode()
    def outputs(self, batch: torch.Tensor) -> Outputs:
        """Logits, pooled features and texture for a normalised batch NxCxHxW, from one forward.

        features = model.forward_head(model.forward_features(x), pre_logits=True); logits = classifier(features).
        """
        engine = self.engine
        if engine is not None:
            parts = [engine.run(chunk, Outputs._fields) for chunk in batch.split(self.ENGINE_BATCH)]
            return Outputs(*(torch.cat(column) for column in zip(*parts)))
        with self.autocast():
            features = self.model.forward_head(self.model.forward_features(self._to_device(batch)), pre_logits=True)
            logits = self.model.get_classifier()(features)
        texture = self.texture.take_or_empty(features)  # kept during that forward, on this thread
        return Outputs(logits.float().cpu(), features.float().cpu(), texture.float().cpu())

    def answer(self, logits: torch.Tensor, features: torch.Tensor, texture: torch.Tensor | None = None) -> Answers:
        """The model's answer from its raw outputs: calibrated probabilities, unknown-artist score, known or not,
        painting or not.

        The one place where calibration (config tim.calibration), the unknown-artist decision
        (tim.unknown + unknown.safetensors) and the not-a-painting decision (tim.painting +
        painting.safetensors) are applied; a checkpoint without them answers as before (plain softmax,
        every picture "known" and a painting, unknown_score = 1 - top probability). Not a painting
        implies not known.
        """
        from tim.calibration import calibrated_probabilities

        logits, features = logits.float(), features.float()
        probs = calibrated_probabilities(logits, self.calibration)
        if self.unknown is None:
            score = 1.0 - probs.max(-1).values
            known = torch.ones(len(logits), dtype=torch.bool)
        else:
            score = self.unknown.score(logits, features, probs)
            known = score <= self.unknown.threshold
        if self.painting is None:
            return Answers(probs, score, known, torch.ones(len(logits), dtype=torch.bool))
        painting_score = self.painting.score(features, texture)
        painting = self.painting.is_painting(painting_score)
        return Answers(probs, score, known & painting, painting, painting_score)

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities over the artists for a normalised batch NxCxHxW (float32 on CPU)."""
        return self.answer(*self.outputs(batch)).probabilities

    def answers(self, batch: torch.Tensor) -> Answers:
        """`answer` for a normalised batch."""
        return self.answer(*self.outputs(batch))

    def to_prediction(self, probs: torch.Tensor, box: Box | None = None, k: int = 5, known: bool = True,
                      unknown_score: float | None = None, painting: bool = True,
                      painting_score: float | None = None) -> Prediction:
        top = probs.topk(min(k, len(self.labels)))
        pairs = [(self.labels[i], float(p)) for p, i in zip(top.values, top.indices)]
        return Prediction(pairs[0][0], pairs[0][1], pairs, box, known=bool(known),
                          unknown_score=None if unknown_score is None else float(unknown_score),
                          painting=bool(painting), painting_score=None if painting_score is None
                          else float(painting_score))

    def to_predictions(self, answers: Answers, boxes: list, k: int = 5, pieces: list[Piece] | None = None
                       ) -> list[Prediction]:
        """A Prediction per row of `answers`; with `pieces`, each says which painting of its picture it is."""
        scores = answers.painting_score if answers.painting_score is not None else [None] * len(boxes)
        out = [self.to_prediction(p, box, k, known, score, is_painting, p_score)
               for p, score, known, box, is_painting, p_score
               in zip(answers.probabilities, answers.unknown_score, answers.known, boxes, answers.painting, scores)]
        for prediction, piece in zip(out, pieces or []):
            prediction.region, prediction.corners = piece.region, piece.corners
        return out

    def predict(self, sources: list[ImageSource], batch_size: int = 32, k: int = 5) -> list[Prediction | ImageError]:
        """A Prediction per source (the picture whole), or the ImageError that says why that one could not be read."""
        return [r if isinstance(r, ImageError) else r[0]
                for r in self.analyse(sources, whole=True, k=k, batch_size=batch_size)]

    @property
    def explainer(self):
        """The model's one CamExplainer (built once: pytorch-grad-cam leaks hooks when rebuilt)."""
        with self._explainer_lock:
            if self._explainer is None:
                from tim.gradcam import CamExplainer  # grad-cam (and cv2) only when explanations are asked for

                self._explainer = CamExplainer(self.model, image_size=self.preprocessor.image_size)
            return self._explainer

    def explain_batch(
        self, batch: torch.Tensor, boxes: list[Box], originals: list[Image.Image], k: int = 5,
        display_side: int = DISPLAY_SIDE, pieces: list[Piece] | None = None,
    ) -> list[Explanation]:
        """Predictions and Grad-CAMs for a preprocessed batch, from one forward (and a backward through the head).

        originals: the pictures the CAMs are drawn on (a piece's straightened painting); pieces: where each is.
        """
        from tim.gradcam import cam_on_picture, overlay

        engine = self.engine
        if engine is not None and self.explainer.reads_features:  # the forward in the engine, the head in PyTorch
            feature_map, texture = engine.run(batch, ("feature_map", "texture"))
            logits, features, cams = self.explainer(batch, feature_map)
        else:
            with self.autocast():
                logits, features, cams = self.explainer(self._to_device(batch))
                texture = self.texture.take_or_empty(features)  # kept during the explainer's forward, on this thread
        out = []
        predictions = self.to_predictions(self.answer(logits, features, texture), boxes, k, pieces)
        for prediction, cam, box, original in zip(predictions, cams, boxes, originals):
            picture = original
            if max(picture.size) > display_side:
                picture = original.copy()
                picture.thumbnail((display_side, display_side), Image.Resampling.BICUBIC)
            heat = cam_on_picture(cam, box, picture.size)
            out.append(Explanation(prediction, picture, heat, overlay(picture, heat)))
        return out

    def explain(self, sources: list[ImageSource], k: int = 5, batch_size: int = 8) -> list[Explanation | ImageError]:
        """An Explanation per source (prediction + Grad-CAM on the original), or the ImageError for that one."""
        return [r if isinstance(r, ImageError) else r[0]
                for r in self.analyse(sources, whole=True, explain=True, k=k, batch_size=batch_size)]

    def answer_pieces(self, pieces: list[Piece], k: int = 5, explain: bool = False
                      ) -> list[Prediction] | list[Explanation]:
        """A Prediction per piece or, with `explain`, an Explanation (Grad-CAM on the piece's picture): one batch."""
        batch = torch.stack([p.tensor for p in pieces])
        boxes = [p.box for p in pieces]
        if explain:
            return self.explain_batch(batch, boxes, [p.picture for p in pieces], k, pieces=pieces)
        return self.to_predictions(self.answers(batch), boxes, k, pieces)

    def piece_outputs(self, pictures, whole: bool = False, first_only: bool = False,
                      batch_size: int = 32) -> "PieceOutputs":
        """Raw logits, features, texture and owner of every painting found in `pictures` (an iterable of decoded
        RGB pictures, consumed as it goes), the way `analyse` answers them; owner[j] = the index of the picture
        piece j came from; `first_only`: the largest painting of each picture only."""
        columns, owners, pieces, owner = [], [], [], []

        def flush():
            columns.append([column.numpy() for column in self.outputs(torch.stack([p.tensor for p in pieces]))])
            owners.append(np.asarray(owner, dtype=int))
            pieces.clear()
            owner.clear()

        for i, picture in enumerate(pictures):
            found = self.preprocessor.pieces_of(picture, whole)[: 1 if first_only else None]
            pieces += found
            owner += [i] * len(found)
            if len(pieces) >= batch_size:
                flush()
        if pieces:
            flush()
        if not columns:
            empty = np.zeros((0, 0), np.float32)
            return PieceOutputs(np.zeros((0, len(self.labels)), np.float32), empty, empty, np.zeros(0, int))
        logits, features, texture = (np.concatenate(column) for column in zip(*columns))
        return PieceOutputs(logits, features, texture, np.concatenate(owners))

    def _readable_pieces(self, sources: list[ImageSource], batch_size: int, results: list, whole: bool):
        """Yield (slot per piece, pieces, originals) for about `batch_size` sources at a time."""
        for start in range(0, len(sources), batch_size):
            slots, pieces, originals = [], [], {}
            for i in range(start, min(start + batch_size, len(sources))):
                try:
                    originals[i], found = self.preprocessor.pieces(sources[i], whole)
                except ImageError as e:
                    results[i] = e
                    continue
                results[i] = []
                slots += [i] * len(found)
                pieces += found
            if pieces:
                yield slots, pieces, originals

    def analyse(self, sources: list[ImageSource], whole: bool = False, explain: bool = False, k: int = 5,
                batch_size: int = 8) -> list[list[Prediction] | list[Explanation] | ImageError]:
        """Per source: an answer per painting found in it (largest first; the picture whole when it is the
        painting, or with `whole`), as Predictions or, with `explain`, Explanations (Grad-CAM on the
        straightened painting, `outlined` = the picture with the paintings found drawn); or its ImageError."""
        results: list = [None] * len(sources)
        for slots, pieces, originals in self._readable_pieces(sources, batch_size, results, whole):
            for i, answer in zip(slots, self.answer_pieces(pieces, k, explain)):
                results[i].append(answer)
            if explain:
                for i, original in originals.items():
                    if results[i] and results[i][0].prediction.region:  # located: outline them on the picture
                        outlined = outline(original, [a.prediction.corners for a in results[i]])
                        for a in results[i]:
                            a.outlined = outlined
        return results


def outline(picture: Image.Image, corners: list[np.ndarray], display_side: int = DISPLAY_SIDE) -> Image.Image:
    """`picture` at most `display_side` px with each painting's outline (corners in the file's pixels) numbered."""
    from tim import locate

    shown = picture
    if max(shown.size) > display_side:
        shown = picture.copy()
        shown.thumbnail((display_side, display_side), Image.Resampling.BICUBIC)
    scale = shown.width / (picture.width * float(picture.info.get(DECODE_SCALE, 1.0)))
    return locate.draw_outlines(shown, [np.asarray(c, np.float32) * scale for c in corners])
