"""Training and batched inference on device-resident tensors.

No DataLoader: an epoch is a random permutation of indices and a loop over
slices (airbench's habit). Poisoning hooks in at batch level (paper Remark 13),
so an attack never copies the training set.
"""

from __future__ import annotations

import copy
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from arena.core.errors import DeviceError
from arena.core.progress import Eta, Ticker

# (x, y, step) -> (x, y) or (x, y, extra_loss)
BatchHook = Callable[[torch.Tensor, torch.Tensor, int], tuple]
Progress = Callable[[str], None]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(
            f"device '{name}' was asked for but CUDA is not available on this machine",
            hint="use --device cpu (or auto), or install a CUDA build of torch on a machine with a GPU",
        )
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise DeviceError(f"unknown device '{name}'", hint="use cpu, cuda or auto")
    return torch.device(name)


_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def pin_threads(n: int) -> None:
    """Use ``n`` intra-op CPU threads here, and in child processes started from now on.

    The thread count is part of what a CPU training's bytes depend on (a conv's
    reductions are split across threads, and float addition is not associative):
    the tiny scenario's benign small-cnn trained with 1 and 2 threads gives
    different weights, each reproducible. Whoever needs a seed to give the same
    bytes in every run pins the count, as ``arena.run.tournament`` does per match.
    """
    if n < 1:
        raise ValueError(f"thread count must be >= 1, not {n}")
    torch.set_num_threads(n)
    for var in _THREAD_ENV:
        os.environ[var] = str(n)


@contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """``pin_threads(n)`` for a block; the previous count and environment come back after it."""
    before = torch.get_num_threads()
    env = {var: os.environ.get(var) for var in _THREAD_ENV}
    pin_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        for var, value in env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


DEFAULT_MATCH_THREADS = 1


def match_threads() -> int:
    """CPU threads per match: ``ARENA_THREADS`` or 1, whatever the number of tournament workers.

    The thread count changes a CPU training's bytes (the tiny scenario's benign small-cnn differs
    at 1 and 2 threads), and the cache must hold the same model for a seed whether it was made by
    ``arena match``, ``--workers 1`` or ``--workers 4``. One thread is what each worker gets anyway
    when workers fill the cores; a lone match on an idle machine pays a little for it and gains
    when another process holds a core (the timings are in docs/measurements.md).
    """
    raw = os.environ.get("ARENA_THREADS", "")
    if not raw:
        return DEFAULT_MATCH_THREADS
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        from arena.core.errors import ArenaError

        raise ArenaError(f"ARENA_THREADS must be a positive integer, not {raw!r}")
    return n


def stderr_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _autocast(device: torch.device):
    # bf16 autocast on GPU only: on CPU it is slower for these small convs.
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def compile_wanted(device: torch.device) -> bool:
    """``torch.compile`` in ``fit``: only on CUDA and only when ``ARENA_COMPILE=1``.

    Opt-in because compiling costs tens of seconds per process and model shape,
    which pays only for long trainings (a benign ResNet-18), and has not been
    measured on this project's GPU runs yet; never on the CPU, where the arena's
    small models train in seconds.
    """
    return device.type == "cuda" and os.environ.get("ARENA_COMPILE", "") == "1"


def compiled(model: nn.Module, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """The callable ``fit`` runs forward: ``torch.compile(model)`` where wanted, else the model.

    A compiled module shares the model's parameters, so training through it trains the model."""
    return torch.compile(model) if compile_wanted(device) else model


def make_optimizer(params, name: str, lr: float, momentum: float = 0.9, weight_decay: float = 2e-4):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)


def batch_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random horizontal flip and 2-pixel translation on a whole batch (CIFAR-style)."""
    n = x.shape[0]
    # Draws come from the seeded CPU generator and move to x's device: CUDA refuses a CPU generator,
    # and drawing on the CPU keeps a seed's numbers the same on every device.
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    pad = F.pad(x, (2, 2, 2, 2), mode="reflect")
    dx, dy = torch.randint(0, 5, (2,), generator=generator).tolist()
    return pad[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 2e-4,
    augment: bool = False,
    hook: BatchHook | None = None,
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
    label: str = "train",
    params=None,
) -> nn.Module:
    """Train ``model`` in place with a one-cycle schedule; ``hook`` may poison each batch.

    The hook is called as ``hook(x, y, step)`` with the (possibly augmented)
    clean batch and the step number, and returns the batch to train on,
    ``(x, y)``, optionally with an extra loss term to add, ``(x, y, loss)``.
    A hook with the attribute ``wants_index = True`` is called as
    ``hook(x, y, step, idx)`` instead, ``idx`` being the batch's indices into
    ``x``/``y`` (the training set), so it can treat the same inputs the same
    way every epoch (``arena.api.poison.Poisoner`` at the ``dataset`` level
    poisons a fixed subset this way).
    """
    device = x.device
    model.train()
    # Channels-last: on the CPU convolutions and max-pooling are faster per training step for the
    # arena's CNNs (docs/measurements.md); on CUDA, bf16 convolutions run on tensor
    # cores in NHWC, and NCHW inputs pay a layout transpose around every conv.
    channels_last = x.dim() == 4
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(params if params is not None else model.parameters(), optimizer, lr, momentum, weight_decay)
    steps_per_epoch = math.ceil(len(y) / batch_size)
    total = max(1, epochs * steps_per_epoch)
    # OneCycleLR divides by (pct_start * total - 1): zero for 5 steps at 0.2, so a small set (a few
    # batches, one epoch) takes a warm-up of a quarter instead of a ZeroDivisionError.
    pct = 0.25 if total == 5 else 0.2
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=pct)
    forward = compiled(model, device)
    eta = Eta(epochs)
    step = 0
    for epoch in range(epochs):
        perm = torch.randperm(len(y), generator=generator).to(device)
        # Running sums stay on the device: a per-step .item() would make the host wait for the GPU
        # at every step. They are read once per epoch, for the progress line.
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        total = 0
        ticker = Ticker(steps_per_epoch, progress, f"  {label}: epoch {epoch + 1}/{epochs},")  # long epochs
        for i in range(0, len(y), batch_size):
            ticker.tick(i // batch_size, "batches")
            idx = perm[i : i + batch_size]
            xb, yb = x[idx], y[idx]
            if augment:
                xb = batch_augment(xb, generator)
            extra = None
            if hook is not None:
                out = hook(xb, yb, step, idx) if getattr(hook, "wants_index", False) else hook(xb, yb, step)
                xb, yb = out[0], out[1]
                extra = out[2] if len(out) > 2 else None
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(device):
                logits = forward(xb)
                loss = F.cross_entropy(logits.float(), yb)
                if extra is not None:
                    loss = loss + extra
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_sum += loss.detach().double() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
            total += len(yb)
        if progress:
            progress(f"  {label}: epoch {eta.status(epoch + 1)}: loss {loss_sum.item() / total:.3f} "
                     f"train-acc {correct.item() / total:.3f}")
    model.eval()
    return model


def _fast_inference_copy(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """A channels-last copy: on the CPU NCHW max-pooling took most of the small CNN's
    forward time in profiles, and channels-last evaluates faster (docs/measurements.md); on CUDA
    bf16 convolutions want NHWC. The copy keeps the caller's model (and its layout) untouched."""
    if x.ndim != 4:
        return model
    try:
        return copy.deepcopy(model).to(memory_format=torch.channels_last)
    except Exception:  # a plugin model that cannot be copied is evaluated as it is
        return model


def inference_batch(device: torch.device) -> int:
    """Inputs per forward pass in batched inference: 1024 on the CPU (cache-sized), 8192 on CUDA
    (a 32x32 ResNet-18 batch of 8192 needs a few GiB in bf16 and keeps the GPU's cores busy)."""
    return 8192 if device.type == "cuda" else 1024


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Softmax outputs for a batch of any size, evaluated in chunks."""
    model.eval()
    batch_size = batch_size or inference_batch(x.device)
    if len(x) > batch_size:
        model = _fast_inference_copy(model, x)
    outs = []
    for i in range(0, len(x), batch_size):
        with _autocast(x.device):
            outs.append(model(x[i : i + batch_size]).float().softmax(1))
    if not outs:
        return torch.empty(0, model.spec.num_classes if hasattr(model, "spec") else 0)
    return torch.cat(outs)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    if len(y) == 0:
        return float("nan")
    return (predict_proba(model, x).argmax(1) == y).float().mean().item()


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    return torch.cat([model.features(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])


@torch.no_grad()
def features_and_predictions(model: nn.Module, x: torch.Tensor,
                             batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate representations (N x D) and predicted classes (N,), in one forward pass per chunk
    (the filters that cluster representations by predicted class need both)."""
    model.eval()
    feats, preds = [], []
    for i in range(0, len(x), batch_size):
        f = model.features(x[i : i + batch_size]).float()
        feats.append(f)
        preds.append(model.classify(f).argmax(1))
    if not feats:
        return torch.empty(0, 0, device=x.device), torch.empty(0, dtype=torch.long, device=x.device)
    return torch.cat(feats), torch.cat(preds)
