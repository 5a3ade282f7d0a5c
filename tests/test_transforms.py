"""tim.data.transforms: training batches are really augmented, evaluation batches are exactly the cached
pixels normalised, and neither transform can end up on the other split (the bug Tim's ancestor had)."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from tim.data.transforms import PhotoEffects
from tim.data import (
    DataConfig, TransformedSplit, eval_transform, pixels_to_image, prepare_data, split_datasets, train_transform,
)

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)  # not ImageNet's, so a wrong mean/std shows


def lopsided(seed: int) -> Image.Image:
    """A textured picture, bright on the left and dim (not black) on the right: a flip shows, and so do the
    black corners a rotation uncovers."""
    rng = np.random.default_rng(seed)
    a = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((64, 64))).astype(int)
    a = 60 + a * 60 // 255
    a[:, :32] += 120
    return Image.fromarray(a.astype(np.uint8))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("paintings")
    for a, artist in enumerate(["Ann", "Bob"]):
        (root / artist).mkdir()
        for i in range(10):
            lopsided(10 * a + i).save(root / artist / f"{i}.png")
    cfg = DataConfig(source=str(root), image_size=32, min_images=5, duplicate_distance=-1,
                     cache_dir=str(tmp_path_factory.mktemp("cache")), num_proc=1)
    return prepare_data(cfg)


def normalised(pixels: bytes) -> torch.Tensor:
    """Plain normalisation of cached pixels, written out by hand."""
    x = torch.from_numpy(np.asarray(pixels_to_image(pixels), dtype=np.float32) / 255).permute(2, 0, 1)
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def epoch(dataset, batch_size=4):
    return torch.cat([x for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False)])


def training_sets(data):
    """The two ways training code builds its datasets: split_datasets, or TransformedSplit by hand."""
    by_helper = split_datasets(data.splits, MEAN, STD)
    by_hand = {
        "train": TransformedSplit(data.splits["train"], train_transform(MEAN, STD)),
        "validation": TransformedSplit(data.splits["validation"], eval_transform(MEAN, STD)),
    }
    return [by_helper, by_hand]


def test_eval_batches_are_plain_normalisation_of_the_cached_pixels(data):
    for sets in training_sets(data):
        val = sets["validation"]
        first, second = epoch(val), epoch(val)
        assert torch.equal(first, second)  # deterministic
        expected = torch.stack([normalised(p) for p in data.splits["validation"]["pixels"]])
        torch.testing.assert_close(first, expected, atol=1e-5, rtol=0)
        assert [y for _, y in val] == list(data.splits["validation"]["artist"])


def test_train_batches_are_augmented(data):
    torch.manual_seed(0)
    for sets in training_sets(data):
        train = sets["train"]
        plain = torch.stack([normalised(p) for p in data.splits["train"]["pixels"]])
        first, second = epoch(train), epoch(train)
        assert first.shape == plain.shape
        assert not torch.equal(first, second)  # two passes over the same items differ
        differs = (first - plain).abs().flatten(1).amax(1) > 0.05
        assert differs.float().mean() > 0.9  # (almost) every item is changed


def test_train_transform_flips_and_rotates(data):
    torch.manual_seed(1)
    train = split_datasets(data.splits, MEAN, STD)["train"]
    black = (0 - torch.tensor(MEAN)) / torch.tensor(STD)  # what a rotation leaves in the corners
    flipped = rotated = upright = 0
    for _ in range(40):
        x, _ = train[0]
        left, right = x[:, :, :12].mean(), x[:, :, -12:].mean()
        flipped += int(right > left)
        upright += int(left > right)
        corners = (x[:, 0, 0], x[:, -1, -1])
        rotated += int(any(torch.allclose(c, black, atol=1e-4) for c in corners))
    assert 5 <= flipped <= 35 and upright >= 5  # RandomHorizontalFlip(p=0.5)
    assert rotated >= 10  # RandomRotation(10) uncovers corners
    test = split_datasets(data.splits, MEAN, STD)["test"]
    assert torch.equal(epoch(test), epoch(test))


def test_rotation_corners_take_the_pad_colour():
    white = (255, 255, 255)
    transform = train_transform(MEAN, STD, fill=white)
    torch.manual_seed(2)
    img = Image.new("RGB", (32, 32), (90, 90, 90))
    corners = torch.stack([transform(img)[:, 0, 0] for _ in range(30)])
    white_value = (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert any(torch.allclose(c, white_value, atol=1e-4) for c in corners)


def test_recipe_is_the_reference_one():
    steps = {type(t): t for t in train_transform().transforms}
    assert steps[v2.RandomHorizontalFlip].p == 0.5
    assert list(steps[v2.RandomRotation].degrees) == [-10.0, 10.0]
    jitter = steps[v2.ColorJitter]
    assert jitter.brightness == jitter.contrast == jitter.saturation == (0.9, 1.1) and jitter.hue is None
    assert not any(isinstance(t, (v2.RandomHorizontalFlip, v2.RandomRotation, v2.ColorJitter))
                   for t in eval_transform().transforms)


def test_strong_augmentation_reframes_and_erases():
    """--augment strong: some draws crop a corner detail out of the frame, some blank a patch; the reference
    augmentation does neither, and both give the model's input size."""
    picture = Image.new("RGB", (32, 32), (90, 90, 90))
    picture.paste((255, 255, 255), (0, 0, 6, 6))  # a white detail in the top-left corner
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]

    def draws(augment):
        torch.manual_seed(3)
        transform = train_transform(MEAN, STD, augment=augment, size=32)
        return [transform(picture) for _ in range(60)]

    def cut_out(x):  # no pixel of the white detail left
        return bool(((x * std + mean).min(0).values < 0.8).all())

    def erased(x):  # a 3x3 block at exactly 0: RandomErasing's value (the mean colour) after normalisation
        blank = (x == 0).all(0).float()
        return bool((torch.nn.functional.avg_pool2d(blank[None], 3, stride=1) == 1).any())

    strong, reference = draws("strong"), draws("reference")
    assert all(x.shape == (3, 32, 32) for x in strong + reference)
    assert sum(map(cut_out, strong)) >= 3 and sum(map(erased, strong)) >= 3
    assert not any(map(cut_out, reference)) and not any(map(erased, reference))
    with pytest.raises(ValueError, match="size"):
        train_transform(augment="strong")


def test_eval_wrapper_on_the_same_split_does_not_switch_off_augmentation(data):
    """Tim's ancestor set the validation transform on a dataset shared with training. Here a second
    wrapper, or a transform set on the split itself, leaves the training wrapper as it was."""
    split = data.splits["train"]
    train = TransformedSplit(split, train_transform(MEAN, STD))
    TransformedSplit(split, eval_transform(MEAN, STD))  # a second wrapper around the very same object
    split.set_transform(lambda batch: {"pixels": [b"" for _ in batch["pixels"]]})  # and a transform on it
    try:
        torch.manual_seed(3)
        first, second = epoch(train), epoch(train)
        assert not torch.equal(first, second)
        wrapped_after = TransformedSplit(split, eval_transform(MEAN, STD))  # ignores the dataset's transform
        pixels = split.with_format(None)[0]["pixels"]
        torch.testing.assert_close(wrapped_after[0][0], normalised(pixels))
    finally:
        split.reset_format()
    assert split.format["type"] is None


def test_split_datasets_gives_each_split_its_own_transform(data):
    sets = split_datasets(data.splits, MEAN, STD, pad_color=(255, 255, 255))
    assert set(sets) == {"train", "validation", "test"}
    assert sets["train"].transform is not sets["validation"].transform
    torch.manual_seed(4)
    white = (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert any(torch.allclose(sets["train"][0][0][:, 0, 0], white, atol=1e-4) for _ in range(30))
    assert len(sets["test"]) == len(data.splits["test"])


def photo_draws(seed: int, count: int = 60, size: int = 64) -> list[np.ndarray]:
    torch.manual_seed(seed)
    effects = PhotoEffects(share=1.0)
    picture = lopsided(7).resize((size, size))
    return [np.asarray(effects(picture), dtype=np.int16) for _ in range(count)]


def test_photo_augmentation_looks_like_a_straightened_phone_photo():
    """--augment photo: pictures keep their size; some gain a sliver of frame or wall along an edge (a band of one
    flat colour the painting does not have), nearly all change colour or gain noise; the run's seed repeats them."""
    plain = np.asarray(lopsided(7).resize((64, 64)), dtype=np.int16)
    draws = photo_draws(seed=5)
    assert all(d.shape == plain.shape for d in draws)

    def flat_edge(d):  # the outermost 2 px rows/columns of one side: nearly one colour, unlike the painting's
        bands = [d[:2], d[-2:], d[:, :2], d[:, -2:]]
        return any(b.reshape(-1, 3).std(0).max() < 6 and np.abs(b.mean((0, 1)) - plain.mean((0, 1))).max() > 15
                   for b in bands)

    assert sum(map(flat_edge, draws)) >= 8  # about 13 of 60 (2 without the edge step)
    changed = [np.abs(d - plain).mean() > 3 for d in draws]
    assert np.mean(changed) > 0.9
    again, other = photo_draws(seed=5), photo_draws(seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(draws, again))
    assert not all(np.array_equal(a, b) for a, b in zip(draws, other))
    assert any(isinstance(t, PhotoEffects) for t in train_transform(augment="photo").transforms)


def test_photo_augmentation_differs_between_dataloader_workers(data):
    """albumentations keeps its own random state: forked workers must not all repeat the same draws."""
    one = data.splits["train"].select([0] * 4)
    torch.manual_seed(0)
    split = TransformedSplit(one, v2.Compose([PhotoEffects(share=1.0), v2.PILToTensor()]))
    batches = [x for x, _ in DataLoader(split, batch_size=2, num_workers=2)]  # worker 0, then worker 1
    assert not torch.equal(batches[0], batches[1])
