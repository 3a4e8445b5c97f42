"""Image classification data for supernet training: an ImageFolder reader, scikit-learn's digits, synthetic.

``digits`` is the 1,797 real 8x8 handwritten digits that scikit-learn ships (no download), upsampled
to ``image_size`` and repeated to 3 channels; ``synthetic`` draws class templates plus noise; any
other name is a directory with one sub-folder per class (``root/<class>/<image>``), or with
``train/`` and ``val/`` sub-folders of that form.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")
BUILTIN_DATASETS = ("digits", "synthetic")


class TensorImages(Dataset):
    """In-memory images ``(N, 3, H, W)`` (normalised float32) and integer labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> None:
        self.images = images
        self.labels = labels
        self.classes = classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


class ImageFolder(Dataset):
    """``root/<class>/<image>`` read lazily with PIL, resized to ``image_size`` x ``image_size``, RGB.

    Parameters
    ----------
    root : str or Path
    image_size : int

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist.
    ValueError
        Fewer than two class folders with images.
    """

    def __init__(self, root: str | Path, image_size: int = 32) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {str(self.root)!r} does not exist")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.samples = [(f, i) for i, c in enumerate(self.classes) for f in sorted((self.root / c).rglob("*"))
                        if f.suffix.lower() in IMAGE_EXTENSIONS]
        if len(self.classes) < 2 or not self.samples:
            raise ValueError(f"image folder {str(self.root)!r} must hold >= 2 class sub-folders with images "
                             f"({', '.join(IMAGE_EXTENSIONS)}); found {len(self.classes)} classes, "
                             f"{len(self.samples)} images")
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as img:
            img = img.convert("RGB").resize((self.image_size, self.image_size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
        x = torch.from_numpy(arr).permute(2, 0, 1)
        return (x - 0.5) / 0.25, torch.tensor(label)


@dataclass(frozen=True)
class DataSplits:
    """Train and held-out splits with their class names."""

    train: Dataset
    val: Dataset
    classes: list[str]


def _upsample(images: np.ndarray, image_size: int) -> torch.Tensor:
    x = torch.from_numpy(images.astype(np.float32))[:, None]
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x.repeat(1, 3, 1, 1)


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return order[n_val:], order[:n_val]


def load_dataset(name: str, image_size: int = 32, val_fraction: float = 0.2, seed: int = 0,
                 n_synthetic: int = 1200, n_classes_synthetic: int = 10) -> DataSplits:
    """Train/held-out splits of ``digits``, ``synthetic`` or an ImageFolder directory.

    Parameters
    ----------
    name : str
    image_size : int
    val_fraction : float
    seed : int
    n_synthetic : int
    n_classes_synthetic : int

    Returns
    -------
    DataSplits

    Raises
    ------
    ValueError
        Unknown name and no such directory.
    """
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size={image_size!r} must be an integer >= 8")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} must be in (0, 1)")
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (_upsample(d.images / 16.0, image_size) - 0.5) / 0.25
        y = torch.from_numpy(d.target.astype(np.int64))
        classes = [str(c) for c in d.target_names]
    elif name == "synthetic":
        rng = np.random.default_rng(seed)
        templates = rng.normal(0.0, 1.0, (n_classes_synthetic, 8, 8))
        labels = rng.integers(0, n_classes_synthetic, n_synthetic)
        images = templates[labels] + rng.normal(0.0, 0.8, (n_synthetic, 8, 8))
        x = _upsample(images, image_size)
        y = torch.from_numpy(labels.astype(np.int64))
        classes = [f"class{i}" for i in range(n_classes_synthetic)]
    else:
        root = Path(name)
        if not root.is_dir():
            raise ValueError(f"dataset={name!r} is neither a built-in dataset {list(BUILTIN_DATASETS)} "
                             "nor an existing ImageFolder directory")
        if (root / "train").is_dir() and (root / "val").is_dir():
            train, val = ImageFolder(root / "train", image_size), ImageFolder(root / "val", image_size)
            return DataSplits(train, val, train.classes)
        full = ImageFolder(root, image_size)
        tr, va = _split(len(full), val_fraction, seed)
        return DataSplits(torch.utils.data.Subset(full, tr.tolist()), torch.utils.data.Subset(full, va.tolist()),
                          full.classes)
    tr, va = _split(len(y), val_fraction, seed)
    return DataSplits(TensorImages(x[tr], y[tr], classes), TensorImages(x[va], y[va], classes), classes)
