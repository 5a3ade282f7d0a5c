"""Tensors for the model: augmentation for training, normalisation only for evaluation.

Each split gets its own wrapper and its own transform. (The project Tim grew
from set the evaluation transform on a dataset object shared with training, so
it trained with no augmentation at all; keeping them apart prevents that.)
`split_datasets` is the one place that pairs splits with transforms, and the
training code uses it, so the tests check exactly what training gets.
"""
from __future__ import annotations

import datasets
import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from tim.data.preprocess import pixels_to_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTATIONS = ("reference", "strong", "photo")
PHOTO_SHARE = 0.7  # share of the training paintings "photo" turns into a straightened phone photo


class PhotoEffects:
    """What the locator hands the model for a phone photo (tim.locate, tim.photos), as an albumentations pipeline
    on a PIL painting: a sliver of frame or wall along some edges (or a little of the painting cut off), the
    perspective a slightly-off outline leaves, and the phone's own light and faults (tim.photos.camera_effects:
    colour cast, uneven light, glare, blur, noise, JPEG). Applied to `share` of the pictures.

    albumentations keeps its own random state; each DataLoader worker (and each epoch of a non-persistent one)
    reseeds it from torch's seed for that worker, so workers differ and a seeded run repeats.
    """

    def __init__(self, share: float = PHOTO_SHARE):
        import albumentations as A
        import cv2

        from tim.photos import FRAME_COLOURS, camera_effects

        walls = [(232, 230, 226), (205, 200, 192), (120, 122, 126)]
        edges = [A.CropAndPad(percent=(-0.03, 0.07), sample_independently=True, keep_size=True,
                              fill=tuple(int(c) for c in colour)) for colour in [*FRAME_COLOURS, *walls]]
        self.pipeline = A.Compose([
            A.OneOf(edges, p=0.6),
            A.Perspective(scale=(0.01, 0.04), keep_size=True, border_mode=cv2.BORDER_REPLICATE, p=0.5),
            camera_effects(),
        ], p=share)
        self.seeded_with = None

    def __call__(self, picture: Image.Image) -> Image.Image:
        seed = torch.initial_seed() % 2**32  # differs per worker and per epoch, follows the run's seed
        if seed != self.seeded_with:
            self.pipeline.set_random_seed(seed)
            self.seeded_with = seed
        return Image.fromarray(self.pipeline(image=np.asarray(picture.convert("RGB")))["image"])


def train_transform(mean=IMAGENET_MEAN, std=IMAGENET_STD, fill=(0, 0, 0), augment: str = "reference",
                    size: int | None = None) -> v2.Compose:
    """Training augmentation, by name (AUGMENTATIONS).

    "reference": RandomHorizontalFlip, RandomRotation(10), ColorJitter(0.1, 0.1, 0.1).
    "strong": the reference plus RandomResizedCrop(scale 0.5-1, back to `size`) before it and
    RandomErasing(p=0.25) after it: the model sees details at new scales and cannot lean on one
    region of a painting (the reference recipe reaches 99% training accuracy on paintings-50).
    "photo": PhotoEffects (a straightened phone photo of the painting) before the reference.
    `fill` colours the corners a rotation uncovers; pass the pad colour so they
    look like the letterbox bars the model sees everywhere else.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment {augment!r} is not one of {AUGMENTATIONS}")
    crop, erase = [], []
    if augment == "photo":
        crop = [PhotoEffects()]
    if augment == "strong":
        if size is None:
            raise ValueError("the strong augmentation crops back to the model's input: pass size")
        crop = [v2.RandomResizedCrop(size, scale=(0.5, 1.0), ratio=(0.8, 1.25), antialias=True)]
        erase = [v2.RandomErasing(p=0.25, scale=(0.02, 0.15))]
    return v2.Compose(
        crop
        + [
            v2.RandomHorizontalFlip(),
            v2.RandomRotation(10, fill=[int(c) for c in fill]),
            v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
        + erase
    )


def eval_transform(mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    return v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


class TransformedSplit(torch.utils.data.Dataset):
    """A prepared split as (image tensor, artist index) pairs through `transform`.

    It reads through its own plain view of the split (a new object, with any
    format or transform the given dataset carries removed, and nothing set on
    that dataset), so no transform can leak between splits in either direction.
    """

    def __init__(self, split: datasets.Dataset, transform):
        self.split = split.select_columns(["pixels", "artist"]).with_format(None)
        self.transform = transform

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        row = self.split[int(i)]
        return self.transform(pixels_to_image(row["pixels"])), int(row["artist"])


class IndexedSplit(TransformedSplit):
    """(image tensor, artist, row index): the index tells which painting each answer is for, after
    gathering (evaluation) or shuffling (distillation looks up the teachers' answer)."""

    def __getitem__(self, i):
        image, artist = super().__getitem__(i)
        return image, artist, int(i)


def split_datasets(
    splits: datasets.DatasetDict, mean=IMAGENET_MEAN, std=IMAGENET_STD, pad_color=(0, 0, 0),
    augment: str = "reference", size: int | None = None,
) -> dict[str, TransformedSplit]:
    """One TransformedSplit per split: `augment` (see train_transform) for "train", normalisation only for the others."""
    train = train_transform(mean, std, fill=pad_color, augment=augment, size=size)
    return {
        name: TransformedSplit(split, train if name == "train" else eval_transform(mean, std))
        for name, split in splits.items()
    }
