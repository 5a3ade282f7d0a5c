"""Small generated 'paintings' for tests: never the real ones (users won't have them)."""
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"Blue_Period": (30, 60, 200), "Red_Studio": (200, 40, 30), "Green_Garden": (40, 170, 60)}


def make_separable_folder(root: Path, per_artist: int = 16, size: int = 40) -> Path:
    """Three 'artists', each painting its own colour with random strokes: easy to tell apart, not trivial."""
    rng = np.random.default_rng(0)
    for artist, colour in COLOURS.items():
        folder = root / artist
        folder.mkdir(parents=True)
        for i in range(per_artist):
            pixels = np.clip(np.array(colour) + rng.normal(0, 40, (size, size + 8 * (i % 3), 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{artist}_{i}.png")
    return root
