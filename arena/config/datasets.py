"""Datasets as tensors, and the per-seed splits of a scenario.

Images are kept as one float tensor in [0, 1], N x C x H x W, with int64
labels: batches are slices, never a DataLoader (docs/benchmarks.md).

A dataset is looked for, in order:

1. the data directory (``ARENA_DATA_DIR``; default
   ``~/.cache/backdoor-arena/data``) in the npz layout
   ``<dir>/<name>/{train,test}.npz`` with arrays ``x`` (uint8) and ``y``;
2. the standard torchvision layout under that directory
   (``FashionMNIST/raw``, ``MNIST/raw``, ``cifar-10-batches-py``);
3. Debian's ``dataset-fashion-mnist`` package (Fashion-MNIST only);
4. a torchvision download into the data directory (never with ``ARENA_OFFLINE=1``,
   for machines without a network, nor from a read-only command).

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

from arena.config.dataset_info import DATASET_INFO, DatasetInfo
from arena.config.sources import READERS, DatasetSource, fingerprint
from arena.core.errors import DatasetNotFound

__all__ = ["DATASET_INFO", "DatasetInfo", "Tensors", "data_dir", "data_digest", "load_dataset",
           "scenario_data_digest", "scenario_info", "scenario_tensors"]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


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


def _decoded_key(name: str, split: str, fingerprint: str) -> str:
    return f"{name}-{split}-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:16]


def _try_sources(name: str, split: str, root: Path, write: bool = True) -> tuple[dict[str, Any] | None, list[str]]:
    """The first source that has the split, as ``{"x", "y", "sha256"}``, through an on-disk cache.

    Decoding gzip'd IDX or pickled CIFAR batches costs about a second per
    process; the decoded uint8 tensors and their content hash are kept in the
    arena's artifact cache (kind ``data``, MAC-verified like every entry, so a
    relabelled copy is never served), keyed by the source's paths, sizes and
    mtimes, so a changed source is re-read. ``write=False`` (read-only commands) only reads the cache.
    """
    from arena.core.cache import ArtifactCache, digest_tensors  # late: reading data needs no cache

    looked: list[str] = []
    cache: ArtifactCache | None = None
    for place, read in _sources(name, split, root):
        looked.append(str(place))
        fp = _fingerprint(place)
        if fp is None:
            continue
        key = _decoded_key(name, split, fp)
        try:
            cache = cache or ArtifactCache(on_event=lambda msg: None)
            hit = cache.get("data", key)
        except OSError:  # no home yet, or a read-only one: decode every time
            hit = None
        if hit is not None:
            return hit, looked
        found = read()
        if found is None:
            continue
        x = _from_uint8(found[0], DATASET_INFO[name].channels)
        y = torch.from_numpy(np.asarray(found[1], dtype=np.int64))
        value = {"x": x, "y": y, "sha256": digest_tensors([x, y])}
        try:
            if cache is not None and write:
                cache.put("data", key, value)
        except OSError:  # a read-only home only costs the decoding next time
            pass
        return value, looked
    return None, looked


def _download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd

    cls = {"fashion-mnist": tvd.FashionMNIST, "mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[name]
    for train in (True, False):
        cls(str(root), train=train, download=True)


@lru_cache(maxsize=8)
def _decoded(name: str, split: str, root: str | None = None, write: bool = True) -> dict[str, Any]:
    """The split's uint8 images, labels and content hash (cached in-process; on disk unless not ``write``)."""
    if name not in DATASET_INFO:
        raise DatasetNotFound(f"unknown dataset '{name}'", hint=f"known: {', '.join(DATASET_INFO)}")
    base = Path(root) if root else data_dir()
    found, looked = _try_sources(name, split, base, write)
    download_error = ""
    if found is None and os.environ.get("ARENA_OFFLINE", "") not in ("", "0"):
        download_error = "downloads are off (ARENA_OFFLINE is set)"
    elif found is None and write:  # a read-only command never downloads
        try:
            _download(name, base)
            found, _ = _try_sources(name, split, base)
        except Exception as exc:  # offline, disk full, mirror down: report below
            download_error = f"{type(exc).__name__}: {exc}"
    if found is None:
        places = "\n    ".join(looked)
        hint = (
            f"put {split}.npz (arrays x uint8, y int) in {base / name}/, or set ARENA_DATA_DIR to a folder "
            "that has it"
        )
        if name == "fashion-mnist":
            hint += ", or `apt-get install dataset-fashion-mnist`"
        raise DatasetNotFound(
            f"dataset '{name}' ({split}) not found; looked in:\n    {places}\n"
            f"  and the torchvision download failed: {download_error or 'no data after download'}",
            hint=hint,
        )
    info = DATASET_INFO[name]
    if tuple(found["x"].shape[1:]) != (info.channels, info.size, info.size):
        raise DatasetNotFound(f"dataset '{name}' has images of shape {tuple(found['x'].shape[1:])}, expected "
                              f"{(info.channels, info.size, info.size)}")
    return found


@lru_cache(maxsize=8)
def _as_float(name: str, split: str, root: str | None = None) -> Tensors:
    d = _decoded(name, split, root)
    return Tensors(d["x"].float().div_(255.0), d["y"])


def load_dataset(name: str, split: str, root: str | None = None) -> Tensors:
    """The whole train or test split as tensors in [0, 1] (cached in-process)."""
    return _as_float(name, split, root)


def _clear() -> None:
    for f in (_as_float, _decoded, _described, _described_float, _described_info):
        f.cache_clear()


load_dataset.cache_clear = _clear  # type: ignore[attr-defined]  # tests reset the in-process caches


def data_digest(name: str, root: str | None = None, write: bool = True) -> str:
    """Content hash of the dataset's decoded train and test arrays (images and labels)."""
    return _digest_of(_decoded(name, "train", root, write), _decoded(name, "test", root, write))


def _digest_of(train: dict[str, Any], test: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for d in (train, test):
        h.update(d["sha256"].encode())
    return h.hexdigest()[:16]


# --- datasets described by a scenario's [dataset] table (arena.config.sources) -------------------------

@lru_cache(maxsize=8)
def _described(src: DatasetSource, split: str, write: bool = True) -> dict[str, Any]:
    """A described split's uint8 images, labels, class names and content hash, through the cache."""
    from arena.core.cache import ArtifactCache, digest_tensors  # late: reading data needs no cache

    fp = fingerprint(src)
    key = f"{src.kind}-{split}-" + hashlib.sha256(
        json.dumps([src.identity(), src.path, fp], sort_keys=True).encode()).hexdigest()[:20]
    cache = None
    try:
        cache = ArtifactCache(on_event=lambda msg: None)
        hit = cache.get("data", key)
    except OSError:
        hit = None
    if hit is not None:
        return hit
    x, y, classes = READERS[src.kind](src, split)
    value = {"x": torch.from_numpy(np.ascontiguousarray(x)), "y": torch.from_numpy(y), "classes": list(classes)}
    value["sha256"] = digest_tensors([value["x"], value["y"]])
    try:
        if cache is not None and write:
            cache.put("data", key, value)
    except OSError:
        pass
    return value


def _split_of(name: str, source: DatasetSource | None, split: str, write: bool = True) -> dict[str, Any]:
    if source is not None:
        return _described(source, split, write)
    return _decoded(name, split, os.environ.get("ARENA_DATA_DIR"), write)


@lru_cache(maxsize=8)
def _described_float(src: DatasetSource, split: str) -> Tensors:
    d = _described(src, split)
    return Tensors(d["x"].float().div_(255.0), d["y"])


def scenario_tensors(name: str, source: DatasetSource | None, split: str) -> Tensors:
    """A scenario's train or test split as tensors in [0, 1]: a built-in dataset or a described one."""
    if source is None:
        return load_dataset(name, split, os.environ.get("ARENA_DATA_DIR"))
    return _described_float(source, split)


def scenario_data_digest(name: str, source: DatasetSource | None, write: bool = True) -> str:
    """Content hash of the data a scenario plays on now (``ARENA_DATA_DIR`` and the other places looked);
    ``write=False`` reads without writing the decoded copy to the cache or downloading."""
    return _digest_of(_split_of(name, source, "train", write), _split_of(name, source, "test", write))


@lru_cache(maxsize=8)
def _described_info(src: DatasetSource) -> DatasetInfo:
    train, test = _described(src, "train"), _described(src, "test")
    x = train["x"]
    classes = tuple(train["classes"])
    top = max(int(train["y"].max()), int(test["y"].max()) if len(test["y"]) else 0) + 1
    num_classes = max(len(classes), top)
    if num_classes < 2 or len(torch.unique(train["y"])) < 2:
        raise DatasetNotFound(f"dataset '{src.name}': its training split holds one class; a classifier needs two or more")
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).float().div_(255.0)
    mean = tuple(round(float(v), 4) for v in flat.mean(1))
    std = tuple(round(max(float(v), 1e-3), 4) for v in flat.std(1))
    return DatasetInfo(src.name, int(x.shape[1]), int(x.shape[-1]), num_classes, mean, std, "", "", classes)


def scenario_info(name: str, source: DatasetSource | None) -> DatasetInfo:
    """Channels, size, classes, mean and std of a scenario's data (read from a described dataset)."""
    if source is None:
        if name not in DATASET_INFO:
            raise DatasetNotFound(f"unknown dataset '{name}'", hint=f"known: {', '.join(DATASET_INFO)}")
        return DATASET_INFO[name]
    return _described_info(source)
