"""What the Ray backend costs a tournament: seconds per match over the local backend, and GPU sharing.

The same 2 x 3 tournament (attackers none and badnet, defenders none,
down-upsampling and fine-pruning, one seed) is played with the real CLI, each
run in a fresh store whose cache is shared and filled by a warm-up, so every
run replays all six matches from cached artifacts and the difference between
backends is the backend's own cost:

- ``local``: ``arena tournament --workers W`` (a process pool);
- ``ray``: ``arena tournament --backend ray``, which starts Ray on this machine
  (W CPUs) and stops it, as a one-machine user would run it;
- ``ray-cluster``: ``arena tournament --backend ray --address HOST:PORT`` on a
  head started once beforehand with ``ray start --head --num-cpus W``, as on a
  cluster (no Ray start-up in the command).

Runs alternate between the modes, ``--repeats`` times; the medians are
printed with the overhead per match, (median of the Ray mode - median of
local) / 6. With ``--gpu`` on a machine with CUDA, it then plays ``--gpu-seeds``
seeds of the tournament on the ``--gpu-scenario`` with ``--gpus-per-match``
1, 0.25 and 0.125 (one GPU: 1, 4 and 8 matches at once) and prints matches
per minute for each. Run it with nothing else on the machine:

    .venv/bin/python benchmarks/bench_ray.py [--repeats 3] [--workers 2]
    .venv/bin/python benchmarks/bench_ray.py --gpu --gpu-scenario fmnist-cnn
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ATTACKERS = ["none", "badnet"]
DEFENDERS = ["none", "down-upsampling", "fine-pruning"]
ARENA = [sys.executable, "-m", "arena.cli"]

# The test suite's tiny scenario (tests/conftest.py), badnet re-trained for one epoch: a match is a
# few seconds once the cache is warm, so a backend's cost per match is not lost in the match's own.
TINY = """
name = "bench-tiny"
description = "test-sized Fashion-MNIST, for backend overheads"
dataset = "fashion-mnist"
architecture = "small-cnn"
device = "cpu"
seeds = [0]

[training]
epochs = 3
batch_size = 128
lr = 0.05
retrain_epochs = 2
retrain_lr = 0.03

[data]
train_limit = 8000
test_limit = 2000

[attack]
target_class = 0
poison_fraction = 0.1

[scoring]
inputs = 600

[controls]
population = 1

[attackers.badnet]
epochs = 1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def home_with(cache: Path, root: Path, name: str) -> Path:
    """A fresh arena home (empty store) whose cache is the shared, warm one."""
    home = root / name
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / "cache").symlink_to(cache, target_is_directory=True)
    return home


def tournament(home: Path, scenario: str, extra: list[str], seeds: int = 1) -> float:
    """Wall-clock seconds of one `arena tournament` in ``home``; fails loudly if a match failed."""
    cmd = [*ARENA, "tournament", "-s", scenario, "--seeds", str(seeds), "-a", ",".join(ATTACKERS),
           "-d", ",".join(DEFENDERS), *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env={**os.environ, "ARENA_HOME": str(home)}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0 or "failed 0" not in r.stdout:
        sys.exit(f"bench_ray: {' '.join(cmd)} failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr[-3000:]}")
    return wall


def use_token_auth() -> None:
    """Token authentication for the head and every driver started from here.

    Ray 2.5x turns it on for `ray start --head` when ~/.ray/auth_token exists, while a driver given
    an explicit address sends its token only with RAY_AUTH_MODE=token: set it for both, with a
    token made first if there is none (unless the caller chose a mode).
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    if not (Path.home() / ".ray" / "auth_token").exists() and not os.environ.get("RAY_AUTH_TOKEN"):
        subprocess.run([str(Path(sys.executable).with_name("ray")), "get-auth-token", "--generate"],
                       check=True, stdout=subprocess.DEVNULL)
    os.environ["RAY_AUTH_MODE"] = "token"


def start_head(cpus: int, gpus: int | None = None) -> tuple[subprocess.Popen, str, int]:
    """`ray start --head --block` in the background: stopped by terminating it (not `ray stop`, which
    would stop every Ray of this user on the machine)."""
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}",
           f"--num-cpus={cpus}", "--include-dashboard=false", "--disable-usage-stats"]
    if gpus is not None:
        cmd.append(f"--num-gpus={gpus}")
    head = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    import ray  # wait until the head takes connections

    deadline = time.monotonic() + 120
    while True:
        time.sleep(2)
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            ray.shutdown()
            return head, address, port
        except ConnectionError:
            if time.monotonic() > deadline or head.poll() is not None:
                stop_head(head, port)
                sys.exit(f"bench_ray: the Ray head on {address} did not come up")


def stop_head(head: subprocess.Popen, port: int | None = None) -> None:
    head.terminate()
    try:
        head.wait(60)
    except subprocess.TimeoutExpired:
        head.kill()
    # `ray start` left its address for a plain ray.init() to find: remove it if it is this head's.
    pointer = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        if port is not None and pointer.read_text().strip().endswith(f":{port}"):
            pointer.unlink()
    except OSError:
        pass


def cpu_overhead(args: argparse.Namespace, root: Path, scenario: str) -> dict:
    cache = root / "shared-cache"
    cache.mkdir(exist_ok=True)
    n = len(ATTACKERS) * len(DEFENDERS)
    warm = tournament(home_with(cache, root, "warm-up"), scenario, ["--workers", str(args.workers)])
    print(f"warm-up (fills the cache): {warm:.1f} s", flush=True)
    head, address, port = start_head(args.workers)
    modes = {
        "local": ["--workers", str(args.workers)],
        "ray": ["--backend", "ray"],  # Ray started by the command, on every core of this machine
        "ray-cluster": ["--backend", "ray", "--address", address],
    }
    times: dict[str, list[float]] = {m: [] for m in modes}
    try:
        for rep in range(args.repeats):
            order = list(modes) if rep % 2 == 0 else list(reversed(modes))
            for m in order:
                times[m].append(tournament(home_with(cache, root, f"{m}-{rep}"), scenario, modes[m]))
                print(f"  run {rep + 1} {m}: {times[m][-1]:.1f} s", flush=True)
    finally:
        stop_head(head, port)
    med = {m: statistics.median(t) for m, t in times.items()}
    print(f"\n{n} matches (2 x 3, cached artifacts), {args.workers} at a time, median of {args.repeats} runs:")
    print(f"{'backend':14s} {'wall s':>8s} {'s/match':>8s} {'overhead s/match':>17s}")
    for m in modes:
        print(f"{m:14s} {med[m]:8.1f} {med[m] / n:8.2f} {(med[m] - med['local']) / n:17.2f}")
    return {"matches": n, "workers": args.workers, "repeats": args.repeats, "runs_s": times, "median_s": med,
            "overhead_per_match_s": {m: (med[m] - med["local"]) / n for m in modes}}


def gpu_throughput(args: argparse.Namespace, root: Path) -> dict:
    import torch

    if not torch.cuda.is_available():
        print("\n--gpu: no CUDA device here; skipped")
        return {}
    cache = root / "gpu-cache"
    cache.mkdir(exist_ok=True)
    n = len(ATTACKERS) * len(DEFENDERS) * args.gpu_seeds
    head, address, port = start_head(os.cpu_count() or 1, gpus=1)
    out: dict[str, float] = {}
    try:
        base = ["--backend", "ray", "--address", address, "--device", "cuda"]
        warm = tournament(home_with(cache, root, "gpu-warm"), args.gpu_scenario, [*base, "--gpus-per-match", "1"],
                          args.gpu_seeds)
        print(f"\nGPU warm-up ({args.gpu_scenario}, {n} matches): {warm:.1f} s", flush=True)
        for share in ("1", "0.25", "0.125"):
            wall = tournament(home_with(cache, root, f"gpu-{share}"), args.gpu_scenario,
                              [*base, "--gpus-per-match", share, "--cpus-per-match", "1"], args.gpu_seeds)
            out[share] = n / wall * 60
            print(f"  --gpus-per-match {share:5s}: {wall:7.1f} s, {out[share]:.1f} matches/min", flush=True)
    finally:
        stop_head(head, port)
    return {"scenario": args.gpu_scenario, "matches": n, "matches_per_min": out,
            "gpu": torch.cuda.get_device_name(0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="matches at a time (local pool size, Ray CPUs)")
    ap.add_argument("--scenario", default=None, help="scenario for the CPU part (default: the tiny one above)")
    ap.add_argument("--gpu", action="store_true", help="also measure matches per minute on one GPU")
    ap.add_argument("--gpu-scenario", default="fmnist-cnn")
    ap.add_argument("--gpu-seeds", type=int, default=2, help="seeds of the 2 x 3 tournament on the GPU")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args()
    if not Path(sys.executable).with_name("ray").exists():
        sys.exit("bench_ray: needs ray: pip install 'backdoor-arena[ray]'")
    use_token_auth()  # before this process imports ray: it reads RAY_AUTH_MODE once
    root = Path(tempfile.mkdtemp(prefix="arena-bench-ray-"))
    scenario = args.scenario
    if scenario is None:
        (root / "bench-tiny.toml").write_text(TINY)
        scenario = str(root / "bench-tiny.toml")
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.2f} at start; scratch {root}", flush=True)
    results = {"cpu": cpu_overhead(args, root, scenario), "cpus": os.cpu_count(), "load_at_start": load}
    if args.gpu:
        results["gpu"] = gpu_throughput(args, root)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
