"""Datasets described in a scenario file rather than named: an image folder, an npz pair, or a
torchvision dataset class whose files are already on disk.

A scenario's ``dataset`` is either a built-in name (``arena.config.datasets``) or a table::

    [dataset]
    folder = "data/signs"      # ImageFolder layout: train/<class>/*.png and test/<class>/*.png
    # npz = "data/signs"       # or: train.npz and test.npz, arrays x (uint8 images) and y (labels)
    # torchvision = "GTSRB"    # or: a torchvision.datasets class, its files under `root`
    # root = "data"            #     (never downloaded unless download = true)
    size = 32                  # optional: resize every image to size x size
    channels = 3               # optional: 1 (grayscale) or 3 (colour); default: what the images are
    name = "signs"             # optional: how tables name it (default: the folder's name)

Paths are relative to the scenario file. Everything else (number of classes,
image size, per-channel mean and std) is read from the data once and cached
with its content hash, which is part of the scenario's digest and of every
cache key (``arena.config.splits.bind_data``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arena.core.errors import DatasetNotFound, ScenarioError

KINDS = ("folder", "npz", "torchvision")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
MIN_SIZE = 8  # pixels: below this no trigger and no convolutional stem fits


@dataclass(frozen=True)
class DatasetSource:
    """A dataset described by where it lives (a scenario's ``[dataset]`` table)."""

    kind: str  # one of KINDS
    path: str  # folder (folder, npz) or root (torchvision), absolute
    name: str
    cls: str = ""  # torchvision class name
    size: int | None = None
    channels: int | None = None
    download: bool = False

    def identity(self) -> dict[str, Any]:
        """What the digest keeps: not the path, since the data's content hash stands for it."""
        return {"kind": self.kind, "name": self.name, "cls": self.cls, "size": self.size, "channels": self.channels}


def parse_source(raw: dict[str, Any], where: str) -> DatasetSource:
    """The ``[dataset]`` table of a scenario file, validated (paths relative to the file)."""
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) != 1:
        raise ScenarioError(f"{where}: [dataset] needs exactly one of {', '.join(KINDS)}, got "
                            f"{', '.join(kinds) or 'none'}",
                            hint='e.g. [dataset] folder = "my-images" (train/<class>/*.png, test/<class>/*.png)')
    allowed = {"folder", "npz", "torchvision", "root", "size", "channels", "name", "download"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown key 'dataset.{unknown[0]}'", hint=f"allowed: {', '.join(sorted(allowed))}")
    kind = kinds[0]
    base = Path(where).parent if where and not where.startswith("<") else Path.cwd()

    def path_of(value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise ScenarioError(f"{where}: 'dataset.{key}' must be a path, got {value!r}")
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else (base / p).resolve())

    size, channels = raw.get("size"), raw.get("channels")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < MIN_SIZE):
        raise ScenarioError(f"{where}: 'dataset.size' must be an integer of at least {MIN_SIZE}, got {size!r}")
    if channels is not None and channels not in (1, 3):
        raise ScenarioError(f"{where}: 'dataset.channels' must be 1 or 3, got {channels!r}")
    download = raw.get("download", False)
    if not isinstance(download, bool):
        raise ScenarioError(f"{where}: 'dataset.download' must be true or false, got {download!r}")
    if kind == "torchvision":
        cls = raw["torchvision"]
        if not isinstance(cls, str) or not cls.isidentifier():
            raise ScenarioError(f"{where}: 'dataset.torchvision' must name a torchvision.datasets class, got {cls!r}")
        path = path_of(raw.get("root", "."), "root")
        name = raw.get("name", cls.lower())
    else:
        if "root" in raw:
            raise ScenarioError(f"{where}: 'dataset.root' is for torchvision datasets; "
                                f"give the path as dataset.{kind}")
        path, cls = path_of(raw[kind], kind), ""
        name = raw.get("name", Path(path).name)
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{where}: 'dataset.name' must be a non-empty string, got {name!r}")
    return DatasetSource(kind, path, name, cls, size, channels, download)


# --- readers: each returns (x uint8 N x C x H x W, y int64, class names) ------------------------------

def _to_nchw(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x
    raise DatasetNotFound(f"{where}: images of shape {x.shape[1:]}; expected H x W, H x W x C or C x H x W "
                          "with 1 or 3 channels")


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.require(x, requirements="W")).float()  # PIL's arrays are read-only
    out = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp_(0, 255).to(torch.uint8).numpy()


def _channels(x: np.ndarray, channels: int | None) -> np.ndarray:
    if channels is None or x.shape[1] == channels:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=1)
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)[None, :, None, None]  # ITU-R 601 luma
    return (x.astype(np.float32) * weights).sum(1, keepdims=True).round().clip(0, 255).astype(np.uint8)


def _finish(x: np.ndarray, y: np.ndarray, src: DatasetSource, where: str) -> np.ndarray:
    x = _channels(_to_nchw(x, where), src.channels)
    if src.size is not None and x.shape[-2:] != (src.size, src.size):
        x = _resize(x, src.size)
    if x.shape[-1] != x.shape[-2]:
        raise DatasetNotFound(f"{where}: images are {x.shape[-2]}x{x.shape[-1]}, not square",
                              hint="set dataset.size to resize them to size x size")
    if x.shape[-1] < MIN_SIZE:
        raise DatasetNotFound(f"{where}: images are {x.shape[-1]} pixels wide, fewer than {MIN_SIZE}",
                              hint="set dataset.size to enlarge them")
    return x


def read_npz(src: DatasetSource, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    path = Path(src.path) / f"{split}.npz"
    if not path.is_file():
        raise DatasetNotFound(f"dataset '{src.name}': {path} not found",
                              hint="an npz dataset is a folder with train.npz and test.npz (arrays x and y)")
    try:
        with np.load(path, allow_pickle=False) as d:
            x, y = d["x"], d["y"]
    except (KeyError, ValueError, OSError) as exc:
        raise DatasetNotFound(f"dataset '{src.name}': cannot read {path}: {exc}",
                              hint="save it with np.savez(path, x=uint8 images, y=integer labels)") from exc
    if x.dtype != np.uint8:
        raise DatasetNotFound(f"dataset '{src.name}': {path} has x of dtype {x.dtype}",
                              hint="store images as uint8 in 0..255")
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or len(y) != len(x):
        raise DatasetNotFound(f"dataset '{src.name}': {path} needs y as one integer label per image")
    if len(y) and y.min() < 0:
        raise DatasetNotFound(f"dataset '{src.name}': {path} has negative labels")
    return _finish(x, y, src, str(path)), y.astype(np.int64), ()


def _class_folders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def read_folder(src: DatasetSource, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from PIL import Image, UnidentifiedImageError

    root = Path(src.path)
    folder = root / split
    layout = "train/<class>/<image> and test/<class>/<image> (the torchvision ImageFolder layout, one split each)"
    if not folder.is_dir():
        raise DatasetNotFound(f"dataset '{src.name}': {folder} is not a folder", hint=f"an image folder holds {layout}")
    classes = [p.name for p in _class_folders(root / "train")] if (root / "train").is_dir() else []
    if not classes:
        raise DatasetNotFound(f"dataset '{src.name}': {root / 'train'} has no class folders",
                              hint=f"an image folder holds {layout}")
    if len(classes) < 2:
        raise DatasetNotFound(f"dataset '{src.name}': one class only ({classes[0]}); a classifier needs two or more",
                              hint=f"add a folder per class under {root / 'train'}")
    extra = sorted({p.name for p in _class_folders(folder)} - set(classes))
    if extra:
        raise DatasetNotFound(f"dataset '{src.name}': {folder} has classes train does not: {', '.join(extra)}")
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        d = folder / cls
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if d.is_dir() else []
        for f in files:
            try:
                with Image.open(f) as im:
                    mode = "L" if im.mode in ("1", "L", "I", "I;16", "F") else "RGB"
                    arr = np.asarray(im.convert(mode), dtype=np.uint8)
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise DatasetNotFound(f"dataset '{src.name}': cannot read image {f}: {exc}",
                                      hint="remove or replace the file") from exc
            images.append(arr[:, :, None] if arr.ndim == 2 else arr)
            labels.append(label)
    if not images:
        raise DatasetNotFound(f"dataset '{src.name}': no images under {folder}",
                              hint=f"images end in one of {', '.join(sorted(IMAGE_SUFFIXES))}")
    channels = src.channels or (3 if any(a.shape[2] == 3 for a in images) else 1)
    shapes = {a.shape[:2] for a in images}
    if len(shapes) > 1 and src.size is None:
        raise DatasetNotFound(f"dataset '{src.name}': images of {len(shapes)} sizes under {folder} "
                              f"(e.g. {', '.join(f'{h}x{w}' for h, w in sorted(shapes)[:3])})",
                              hint="set dataset.size to resize every image to size x size")
    batch = []
    for a in images:
        a = _channels(a.transpose(2, 0, 1)[None], channels)
        if src.size is not None and a.shape[-2:] != (src.size, src.size):
            a = _resize(a, src.size)
        batch.append(a)
    x = np.concatenate(batch)
    y = np.asarray(labels, dtype=np.int64)
    # Each image was resized above (folders may mix sizes): the common checks only, no second resize.
    return _finish(x, y, dataclasses.replace(src, size=None), str(folder)), y, tuple(classes)


def read_torchvision(src: DatasetSource, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    import torchvision.datasets as tvd

    cls = getattr(tvd, src.cls, None)
    if not isinstance(cls, type):
        raise DatasetNotFound(f"torchvision has no dataset class '{src.cls}'",
                              hint="see torchvision.datasets for the names, e.g. GTSRB, CIFAR100, SVHN")
    attempts = ({"train": split == "train"}, {"split": split})
    last: Exception | None = None
    for kwargs in attempts:
        try:
            ds = cls(src.path, download=src.download, **kwargs)
            break
        except TypeError as exc:  # this class splits by the other keyword
            last = exc
        except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
            raise DatasetNotFound(f"torchvision {src.cls} ({split}) not found under {src.path}: {exc}",
                                  hint="put its files there, or set dataset.download = true to fetch them once")
    else:
        raise DatasetNotFound(f"torchvision {src.cls} takes neither train= nor split=: {last}",
                              hint="use an image folder or npz for this dataset")
    xs, ys = [], []
    for i in range(len(ds)):
        img, label = ds[i]
        if hasattr(img, "convert"):  # a PIL image: grayscale stays grayscale unless channels says otherwise
            gray = img.mode in ("1", "L", "I", "I;16", "F")
            img = img.convert("L" if (src.channels == 1 or (src.channels is None and gray)) else "RGB")
        arr = np.asarray(img, dtype=np.uint8)
        xs.append(arr)
        ys.append(int(label))
    if len({a.shape for a in xs}) > 1 and src.size is None:
        raise DatasetNotFound(f"torchvision {src.cls}: images of several sizes",
                              hint="set dataset.size to resize every image to size x size")
    if src.size is not None:  # one by one: images of several sizes do not stack before
        xs = [_resize(_to_nchw(a[None], src.cls), src.size)[0] for a in xs]
    x = np.stack(xs)
    names = tuple(str(c) for c in getattr(ds, "classes", ()))
    return _finish(x, np.asarray(ys), src, f"torchvision {src.cls}"), np.asarray(ys, dtype=np.int64), names


READERS = {"folder": read_folder, "npz": read_npz, "torchvision": read_torchvision}


def fingerprint(src: DatasetSource) -> str:
    """Paths, sizes and mtimes of every file under the source: a change re-reads it."""
    root = Path(src.path)
    if not root.exists():
        return "absent"
    rows = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            st = os.stat(os.path.join(dirpath, f))
            rows.append(f"{os.path.relpath(os.path.join(dirpath, f), root)}\0{st.st_size}\0{st.st_mtime_ns}")
    return "\n".join(rows)
