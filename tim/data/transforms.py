"""Tensors for the model: augmentation for training, normalisation only for evaluation.

Each split gets its own wrapper and its own transform. (The project Tim grew
from set the evaluation transform on a dataset object shared with training, so
it trained with no augmentation at all; keeping them apart prevents that.)
"""
from __future__ import annotations

import datasets
import torch
from PIL import Image
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_transform(mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """The reference recipe: RandomHorizontalFlip, RandomRotation(10), ColorJitter(0.1, 0.1, 0.1)."""
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomRotation(10),
            v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def eval_transform(mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    return v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


class TransformedSplit(torch.utils.data.Dataset):
    """A prepared split as (image tensor, artist index) pairs through `transform`."""

    def __init__(self, split: datasets.Dataset, transform):
        self.split = split.with_format("numpy", columns=["pixels", "artist"])
        self.transform = transform

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        row = self.split[int(i)]
        return self.transform(Image.fromarray(row["pixels"])), int(row["artist"])
