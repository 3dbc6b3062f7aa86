"""What the arena knows of its built-in datasets before reading them (no torch here: scenario files are
validated against it without loading the data stack)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    torchvision_dir: str
    # ``data_digest`` of the standard release (the official files, in any of the layouts above): the
    # data the name stands for. Other data under the name binds a scenario to its own digest.
    standard_digest: str = ""
    classes: tuple[str, ...] = ()  # class names, where the data names them (an image folder's folders)


DATASET_INFO = {
    "fashion-mnist": DatasetInfo("fashion-mnist", 1, 28, 10, (0.2860,), (0.3530,), "FashionMNIST",
                                 "81c4ac24b47ff262"),
    "mnist": DatasetInfo("mnist", 1, 28, 10, (0.1307,), (0.3081,), "MNIST", "8dd2ac4962e2ee24"),
    "cifar10": DatasetInfo(
        "cifar10", 3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "cifar-10-batches-py",
        "d1c2995c2c1b2e4b",
    ),
}
