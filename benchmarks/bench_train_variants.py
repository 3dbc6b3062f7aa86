"""Training-step variants on the CPU (compiled, vectorized over a population): faster than `fit`'s?

Times one SGD step of the arena's models, one thread as every match, on random inputs of the
scenario's shape and batch size, three ways:

- eager: what ``arena.api.training.fit`` does (channels-last model and batches);
- compiled: the same model through ``torch.compile`` (inductor's C++ code; the first steps
  compile, and that time is printed apart);
- vmap: ``--population K`` models trained together, ``torch.func.stack_module_state`` +
  ``vmap(grad(...))``, against the same K models stepped one after another (small-cnn only:
  batch norm's running statistics are buffers vmap cannot update in place).

The variants alternate in rounds, so a busy machine slows each alike; medians over the rounds.
Run: ``.venv/bin/python benchmarks/bench_train_variants.py [--arch small-resnet]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

from arena.api.models import ArchSpec, build_model

SHAPES = {"small-cnn": (1, 28, 256), "small-resnet": (3, 32, 128)}  # channels, side, the scenario's batch


def _spec(arch: str) -> ArchSpec:
    c, side, _ = SHAPES[arch]
    return ArchSpec(arch, c, side, 10, (0.5,) * c, (0.25,) * c)


def _steps(model: torch.nn.Module, forward, x: torch.Tensor, y: torch.Tensor, n: int) -> float:
    """Seconds per training step, ``n`` steps of ``forward`` (the model, or its compiled callable)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    t = time.perf_counter()
    for _ in range(n):
        loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t) / n


def compile_rounds(arch: str, rounds: int, steps: int) -> dict:
    c, side, bs = SHAPES[arch]
    x = torch.rand(bs, c, side, side).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (bs,))
    torch.manual_seed(0)
    eager = build_model(_spec(arch)).to(memory_format=torch.channels_last).train()
    plain = copy.deepcopy(eager)
    t = time.perf_counter()
    compiled = torch.compile(plain)
    _steps(plain, compiled, x, y, 2)
    warm = time.perf_counter() - t
    _steps(eager, eager, x, y, 2)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(rounds):
        times["eager"].append(_steps(eager, eager, x, y, steps))
        times["compiled"].append(_steps(plain, compiled, x, y, steps))
    return {"compile_s": round(warm, 1), **{k: round(1000 * statistics.median(v), 1) for k, v in times.items()}}


def vmap_rounds(arch: str, population: int, rounds: int, steps: int) -> dict:
    c, side, bs = SHAPES[arch]
    x = torch.rand(population, bs, c, side, side)
    y = torch.randint(0, 10, (population, bs))
    models = [build_model(_spec(arch)).train() for _ in range(population)]
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")

    def loss(p, b, xb, yb):
        return F.cross_entropy(functional_call(skeleton, (p, b), (xb,)), yb)

    grads = vmap(grad(loss), randomness="different")

    def one_by_one(n: int) -> float:
        opts = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in models]
        t = time.perf_counter()
        for _ in range(n):
            for k, m in enumerate(models):
                out = F.cross_entropy(m(x[k]), y[k])
                opts[k].zero_grad(set_to_none=True)
                out.backward()
                opts[k].step()
        return (time.perf_counter() - t) / n

    def together(n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            g = grads(params, buffers, x, y)
            with torch.no_grad():
                for name in params:
                    params[name] -= 0.01 * g[name]
        return (time.perf_counter() - t) / n

    one_by_one(1), together(1)
    times: dict[str, list[float]] = {"one_by_one": [], "vmap": []}
    for _ in range(rounds):
        times["one_by_one"].append(one_by_one(steps))
        times["vmap"].append(together(steps))
    return {k: round(1000 * statistics.median(v), 1) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(SHAPES), default="small-cnn")
    ap.add_argument("--population", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", help="write the figures here as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as every match (arena.api.training.match_threads)
    result = {"arch": args.arch, "threads": 1, "cores": os.cpu_count(), "load": os.getloadavg()[0],
              "ms_per_step": compile_rounds(args.arch, args.rounds, args.steps)}
    if args.arch == "small-cnn":
        result[f"ms_per_step_of_{args.population}_models"] = vmap_rounds(args.arch, args.population, args.rounds,
                                                                          args.steps)
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
