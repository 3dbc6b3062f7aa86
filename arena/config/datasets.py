"""Datasets as tensors, and the per-seed splits of a scenario.

Images are kept as one float tensor in [0, 1], N x C x H x W, with int64
labels: batches are slices, never a DataLoader (README, "Speed and quality").

A dataset is looked for, in order:

1. the data directory (``ARENA_DATA_DIR`` or ``--data-dir``; default
   ``~/.cache/backdoor-arena/data``) in the npz layout
   ``<dir>/<name>/{train,test}.npz`` with arrays ``x`` (uint8) and ``y``;
2. the standard torchvision layout under that directory
   (``FashionMNIST/raw``, ``MNIST/raw``, ``cifar-10-batches-py``);
3. Debian's ``dataset-fashion-mnist`` package (Fashion-MNIST only);
4. a torchvision download into the data directory.

Offline and absent, one ``DatasetNotFound`` lists every place it looked.
Decoded datasets are cached as uint8 tensors on disk (under the arena home)
and in memory for the process.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arena.core.errors import DatasetNotFound

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    torchvision_dir: str


DATASET_INFO = {
    "fashion-mnist": DatasetInfo("fashion-mnist", 1, 28, 10, (0.2860,), (0.3530,), "FashionMNIST"),
    "mnist": DatasetInfo("mnist", 1, 28, 10, (0.1307,), (0.3081,), "MNIST"),
    "cifar10": DatasetInfo(
        "cifar10", 3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "cifar-10-batches-py"
    ),
}


@dataclass
class Tensors:
    """Images (N x C x H x W, float in [0, 1]) and labels (N, int64)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> "Tensors":
        return Tensors(self.x.to(device), self.y.to(device))

    def subset(self, idx: torch.Tensor) -> "Tensors":
        return Tensors(self.x[idx], self.y[idx])


def data_dir() -> Path:
    env = os.environ.get("ARENA_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "backdoor-arena" / "data"


def _from_uint8(x: np.ndarray, channels: int) -> torch.Tensor:
    t = torch.from_numpy(np.array(x, copy=True))
    if t.ndim == 3:
        t = t.unsqueeze(1)
    elif t.shape[-1] == channels and t.shape[1] != channels:
        t = t.permute(0, 3, 1, 2)
    return t.contiguous()


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_pair(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    prefix = "train" if split == "train" else "t10k"
    for ext in (".gz", ""):
        xi = folder / f"{prefix}-images-idx3-ubyte{ext}"
        yi = folder / f"{prefix}-labels-idx1-ubyte{ext}"
        if xi.is_file() and yi.is_file():
            return _read_idx(xi), _read_idx(yi).astype(np.int64)
    return None


def _cifar_batches(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if not all((folder / n).is_file() for n in names):
        return None
    xs, ys = [], []
    for n in names:
        with open(folder / n, "rb") as f:
            d = pickle.load(f, encoding="latin1")  # the official CIFAR-10 python format
        xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d["labels"], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as d:
        return d["x"], d["y"].astype(np.int64)


def _sources(name: str, split: str, root: Path) -> list[tuple[Path, Callable[[], Any]]]:
    """Candidate (place, reader) pairs in priority order; a reader returns (x, y) or None."""
    info = DATASET_INFO[name]
    npz = root / name / f"{split}.npz"
    tv = root / info.torchvision_dir
    out: list[tuple[Path, Callable[[], Any]]] = [(npz, lambda: _read_npz(npz) if npz.is_file() else None)]
    if name == "cifar10":
        out.append((tv, lambda: _cifar_batches(tv, split)))
    else:
        out.append((tv / "raw", lambda: _idx_pair(tv / "raw", split)))
    if name == "fashion-mnist":
        out.append((DEBIAN_FASHION_MNIST, lambda: _idx_pair(DEBIAN_FASHION_MNIST, split)))
    return out


def _fingerprint(place: Path) -> str | None:
    """Size and mtime of a source (file, or the files of a folder); None when absent."""
    files = [place] if place.is_file() else sorted(p for p in place.glob("*") if p.is_file()) if place.is_dir() else []
    if not files:
        return None
    return json.dumps([[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files])


def _tensor_cache_path(name: str, split: str, fingerprint: str) -> Path:
    from arena.core.cache import arena_home  # late: the cache module is not needed to read data

    key = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    return arena_home() / "cache" / "datasets" / f"{name}-{split}-{key}.pt"


def _try_sources(name: str, split: str, root: Path) -> tuple[tuple[Any, Any] | None, list[str]]:
    """The first source that has the split, read through an on-disk uint8 tensor cache.

    Decoding gzip'd IDX or pickled CIFAR batches costs about a second per
    process; the decoded uint8 tensors are saved under the arena home, keyed
    by the source's paths, sizes and mtimes, so a changed source is re-read.
    """
    looked: list[str] = []
    for place, read in _sources(name, split, root):
        looked.append(str(place))
        fp = _fingerprint(place)
        if fp is None:
            continue
        cached = _tensor_cache_path(name, split, fp)
        if cached.is_file():
            try:
                d = torch.load(cached, weights_only=True)
                return (d["x"], d["y"]), looked
            except Exception:  # a corrupt cache file is re-made below
                pass
        found = read()
        if found is None:
            continue
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".tmp{os.getpid()}")
            torch.save({"x": _from_uint8(found[0], DATASET_INFO[name].channels),
                        "y": torch.from_numpy(np.asarray(found[1], dtype=np.int64))}, tmp)
            os.replace(tmp, cached)
        except OSError:  # a read-only home only costs the decoding next time
            pass
        return found, looked
    return None, looked


def _download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd

    cls = {"fashion-mnist": tvd.FashionMNIST, "mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[name]
    for train in (True, False):
        cls(str(root), train=train, download=True)


@lru_cache(maxsize=8)
def load_dataset(name: str, split: str, root: str | None = None) -> Tensors:
    """The whole train or test split as uint8-backed tensors in [0, 1] (cached in-process)."""
    if name not in DATASET_INFO:
        raise DatasetNotFound(f"unknown dataset '{name}'", hint=f"known: {', '.join(DATASET_INFO)}")
    base = Path(root) if root else data_dir()
    found, looked = _try_sources(name, split, base)
    download_error = ""
    if found is None:
        try:
            _download(name, base)
            found, _ = _try_sources(name, split, base)
        except Exception as exc:  # offline, disk full, mirror down: report below
            download_error = f"{type(exc).__name__}: {exc}"
    if found is None:
        places = "\n    ".join(looked)
        hint = (
            f"put {split}.npz (arrays x uint8, y int) in {base / name}/, or set ARENA_DATA_DIR to a folder "
            "that has it (e.g. ARENA_DATA_DIR=../shared/data)"
        )
        if name == "fashion-mnist":
            hint += ", or `apt-get install dataset-fashion-mnist`"
        raise DatasetNotFound(
            f"dataset '{name}' ({split}) not found; looked in:\n    {places}\n"
            f"  and the torchvision download failed: {download_error or 'no data after download'}",
            hint=hint,
        )
    x, y = found
    info = DATASET_INFO[name]
    xt = x if isinstance(x, torch.Tensor) else _from_uint8(x, info.channels)
    if tuple(xt.shape[1:]) != (info.channels, info.size, info.size):
        raise DatasetNotFound(f"dataset '{name}' has images of shape {tuple(xt.shape[1:])}, expected "
                              f"{(info.channels, info.size, info.size)}")
    yt = y if isinstance(y, torch.Tensor) else torch.from_numpy(np.asarray(y, dtype=np.int64))
    return Tensors(xt.float().div_(255.0), yt)
