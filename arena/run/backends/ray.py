"""Tournaments on a Ray cluster: each match a Ray task, this process the only writer of the store.

``arena tournament --backend ray`` plans exactly as the local backend does
(``arena.run.tournament.plan``: the same skip rule and order) and hands jobs out
through the same ``JobQueue``, so a non-adaptive trojan is crafted by one
match and read from the cache by the rest. Each job runs ``arena.run.jobs.play_job``
in a Ray worker as a task asking for ``cpus_per_match`` CPUs and
``gpus_per_match`` GPUs (a fraction lets several matches share one GPU); the
driver keeps only as many tasks in flight as the cluster's nodes can run at
once, so the queue's order is the order matches start and "running" means
running. Results come back to the driver, which commits each one to SQLite as
it arrives (the same ``done`` as the local backend): a driver stopped by
Ctrl-C or ``kill -9`` loses only the matches in flight, and the same command
resumes.

Artifacts. Workers read and write the content-addressed cache under
``ARENA_HOME`` directly, so every node must see the driver's arena home at the
same path (one shared filesystem on a multi-node cluster). The driver sends
its ``ARENA_*`` environment to the workers (``ARENA_HOME`` made absolute,
``ARENA_THREADS`` pinned to its own count) and checks before the first match,
on every node that can take one, that a worker reads a marker file the driver
has just written there: a node that does not see it is one clear error
(``HomeNotShared``), not a cluster silently training into private folders.
Each match checks the marker again, so a node that joins later is checked too.
Benign models and control runs are made under the cache's per-key file locks
(``fcntl.flock``), which hold across processes on one machine and, on NFS
(v4, or v3 with lockd) and the other shared filesystems that implement
``flock``, across machines; trojans are kept apart by the ``JobQueue``.

Faults. A match that raises is an error record for that match only (inside
``play_job``, as locally). A worker process or node that dies mid-match is
retried once by Ray (``max_retries=1``; application errors are not retried);
if it dies again the match is recorded as failed with ``WorkerDied``. Nothing
else in flight is touched.

Ray is an optional dependency (``pip install 'backdoor-arena[ray]'``),
imported only when this backend is used.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from arena.core.cache import arena_home
from arena.core.errors import ArenaError
from arena.config.scenario import Scenario
from arena.results.record import MatchRecord
from arena.run.jobs import Job, JobQueue, Player, Tally, WorkerDied, error_record, play_job
from arena.api.training import Progress, pin_threads

INSTALL_HINT = "install it with: pip install 'backdoor-arena[ray]' (or pip install ray, into the arena's environment)"
# How long the driver waits for every node to answer the home check (worker start-up included).
PROBE_TIMEOUT_S = 300.0
# How often the driver wakes while waiting for results: Ctrl-C is handled between two waits.
_WAIT_S = 1.0
_MARKERS = ".ray-drivers"  # folder under ARENA_HOME for the drivers' marker files


class RayNotInstalled(ArenaError):
    """``--backend ray`` without the ``ray`` package."""


class RayClusterError(ArenaError):
    """The Ray cluster cannot be reached, or cannot run a match with the resources asked for."""


class HomeNotShared(ArenaError):
    """A Ray worker does not see the driver's arena home (no shared filesystem at that path)."""

    def __reduce__(self) -> tuple[Any, ...]:  # raised in a worker: the hint must survive the trip back
        return (type(self), (self.args[0], self.hint))


@dataclass(frozen=True)
class RayOptions:
    """Where and how big: the cluster and what each match reserves on it.

    ``address``: a running cluster (``ray start --head`` prints it; ``auto`` finds the one started
    on this machine); None uses ``$RAY_ADDRESS`` when set, else starts a Ray of its own on this
    machine for the tournament. ``cpus_per_match``: CPUs each match reserves (None: ``match_threads()``, the
    threads it uses). ``gpus_per_match``: GPUs each match reserves, a fraction to share one (None:
    1 with ``--device cuda``, else 0).
    """

    address: str | None = None
    cpus_per_match: float | None = None
    gpus_per_match: float | None = None

    def validate(self, device: str) -> None:
        """Refuse settings that cannot run, before any planning or training (``device``: as played,
        ``effective_device``)."""
        if self.cpus_per_match is not None and self.cpus_per_match <= 0:
            raise RayClusterError(f"--cpus-per-match must be above 0, not {self.cpus_per_match:g}",
                                  hint="each match needs at least part of a CPU; 1 is the default")
        if self.gpus_per_match is not None and self.gpus_per_match < 0:
            raise RayClusterError(f"--gpus-per-match must be 0 or more, not {self.gpus_per_match:g}")
        if device == "cuda" and self.gpus_per_match == 0:
            raise RayClusterError("--device cuda with --gpus-per-match 0: the matches would use GPUs Ray "
                                  "did not give them",
                                  hint="give each match a GPU or a share of one, e.g. --gpus-per-match 0.25")

    def resources(self, threads: int, device: str) -> tuple[float, float]:
        """(CPUs, GPUs) each match reserves (``device``: as played, ``effective_device``)."""
        cpus = self.cpus_per_match if self.cpus_per_match is not None else float(threads)
        gpus = self.gpus_per_match if self.gpus_per_match is not None else (1.0 if device == "cuda" else 0.0)
        return cpus, gpus


def effective_device(device: str, scenario: Scenario) -> str:
    """The device a match is played on, as the referee picks it: the one asked for, else the scenario's."""
    return device if device != "auto" else scenario.device


def import_ray() -> ModuleType:
    """The ``ray`` module, or ``RayNotInstalled`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayNotInstalled("the Ray backend needs the 'ray' package, which is not installed",
                              hint=INSTALL_HINT) from None
    return ray


def worker_env(threads: int) -> dict[str, str]:
    """The environment the driver hands its workers: every ``ARENA_*`` variable set here, with
    ``ARENA_HOME`` absolute (the cache's place, checked on every node) and ``ARENA_THREADS`` the
    driver's thread count (part of what a CPU training's bytes depend on)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("ARENA_")}
    env["ARENA_HOME"] = str(arena_home().absolute())
    env["ARENA_THREADS"] = str(threads)
    return env


# --- what runs on a worker --------------------------------------------------------------------------

def _marker_seen(name: str, token: str) -> tuple[str, bool]:
    """This worker's arena home, and whether the driver's marker ``name`` there holds ``token``."""
    home = arena_home().absolute()
    try:
        return str(home), (home / _MARKERS / name).read_text() == token
    except OSError:
        return str(home), False


def _probe(name: str, token: str) -> dict[str, Any]:
    """Run on each node before the first match: what the driver compares with its own view."""
    import socket

    import arena
    from arena.core.cache import ENGINE_VERSION

    home, seen = _marker_seen(name, token)
    return {"host": socket.gethostname(), "home": home, "seen": seen,
            "version": f"{arena.__version__} (engine {ENGINE_VERSION})"}


def _play_task(job: Job, threads: int, marker: str, token: str, player: Player = play_job) -> MatchRecord:
    """One match in a Ray worker: the home check, the driver's thread count, then ``player``."""
    home, seen = _marker_seen(marker, token)
    if not seen:
        import socket

        raise HomeNotShared(f"the Ray worker on {socket.gethostname()} does not see the driver's arena home "
                            f"{home} (no marker {_MARKERS}/{marker} there)", hint=_SHARE_HINT)
    pin_threads(threads)
    return player(job)


_SHARE_HINT = ("put ARENA_HOME on a shared filesystem that every node mounts at the same path (NFS, CephFS, "
               "...), and export that ARENA_HOME before `arena tournament --backend ray`")


# --- the driver ---------------------------------------------------------------------------------------

def _connect(ray: ModuleType, options: RayOptions) -> bool:
    """Connect to (or start) Ray unless this process already has; True if it did (and must shut down)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    # "local" starts a Ray of our own: plain ray.init() would join whatever `ray start` last ran on
    # this machine, even a head that has since stopped.
    address = options.address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        kwargs["include_dashboard"] = False  # no dashboard to serve
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "this machine" if address == "local" else address
        raise RayClusterError(f"cannot connect to the Ray cluster at {where}: {exc}",
                              hint="start its head with `ray start --head` and pass the address it prints "
                                   "(--address HOST:6379), or leave --address out to start Ray here; a cluster "
                                   "with token authentication (Ray's default when ~/.ray/auth_token exists) "
                                   "also needs RAY_AUTH_MODE=token and its token here (~/.ray/auth_token or "
                                   "RAY_AUTH_TOKEN)") from None
    return True


def _nodes(ray: ModuleType) -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def _slots_on(node: dict[str, Any], cpus: float, gpus: float) -> int:
    """How many matches one node can run at once with ``cpus`` CPUs and ``gpus`` GPUs each."""
    res = node.get("Resources", {})
    fits = [math.floor(res.get("CPU", 0.0) / cpus + 1e-9)]
    if gpus > 0:
        fits.append(math.floor(res.get("GPU", 0.0) / gpus + 1e-9))
    return max(0, min(fits))


def _slots(ray: ModuleType, cpus: float, gpus: float) -> int:
    return sum(_slots_on(n, cpus, gpus) for n in _nodes(ray))


def _too_small(ray: ModuleType, cpus: float, gpus: float) -> RayClusterError:
    have = "; ".join(f"{n.get('NodeManagerAddress', '?')}: {n.get('Resources', {}).get('CPU', 0):g} CPU, "
                     f"{n.get('Resources', {}).get('GPU', 0):g} GPU" for n in _nodes(ray)) or "no live node"
    return RayClusterError(f"no node of the Ray cluster can run a match with {cpus:g} CPU(s) and {gpus:g} GPU(s) "
                           f"({have})",
                           hint="lower --cpus-per-match / --gpus-per-match, or add a node that has them")


def check_home(ray: ModuleType, home: Path, marker: str, token: str, env: dict[str, str], cpus: float,
               gpus: float) -> None:
    """Every node that can take a match must see the marker the driver wrote in its arena home.

    One tiny task per such node (pinned to it), in the workers' environment, so it also starts the
    worker processes the matches will use. Raises ``HomeNotShared`` naming the nodes that do not
    see it, or ``RayClusterError`` for nodes that run another arena version or cannot run ours.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in _nodes(ray) if _slots_on(n, cpus, gpus) > 0]
    if not nodes:
        raise _too_small(ray, cpus, gpus)
    probe = ray.remote(_probe)
    refs = [probe.options(num_cpus=0, max_retries=1, runtime_env={"env_vars": env},
                          scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                          ).remote(marker, token) for n in nodes]
    try:
        answers = ray.get(refs, timeout=PROBE_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise RayClusterError(f"the Ray workers did not answer the arena home check within {PROBE_TIMEOUT_S:g} s",
                              hint="check that the nodes are healthy (`ray status`)") from None
    except ray.exceptions.RayError as exc:
        raise RayClusterError(f"a Ray worker could not run the arena: {str(exc).strip().splitlines()[-1]}",
                              hint="install backdoor-arena (the same version as here) in the Python environment "
                                   "Ray runs on every node") from None
    import arena
    from arena.core.cache import ENGINE_VERSION

    mine = f"{arena.__version__} (engine {ENGINE_VERSION})"
    blind = [a for a in answers if not a["seen"]]
    if blind:
        listed = ", ".join(f"{a['host']} (looked in {a['home']})" for a in blind)
        raise HomeNotShared(f"Ray workers on {len(blind)} of {len(answers)} node(s) do not see the driver's arena "
                            f"home {home}: {listed}", hint=_SHARE_HINT)
    other = [a for a in answers if a["version"] != mine]
    if other:
        listed = ", ".join(f"{a['host']} runs {a['version']}" for a in other)
        raise RayClusterError(f"Ray workers run another arena than the driver ({mine}): {listed}",
                              hint="install the same backdoor-arena on every node")


def _write_marker(home: Path) -> tuple[str, str, Path]:
    """A file only this driver's run has written: (its name, its content, its path)."""
    name, token = f"{os.getpid()}-{secrets.token_hex(8)}", secrets.token_hex(16)
    path = home / _MARKERS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token)
    return name, token, path


def _outcome(ray: ModuleType, ref: Any, job: Job) -> MatchRecord:
    """The match's record; Ray's failures become an error record for this match only.

    A ``HomeNotShared`` from the worker is raised instead: the whole tournament stops on it.
    """
    exc_mod = ray.exceptions
    try:
        return ray.get(ref)
    except exc_mod.RayTaskError as exc:  # raised in the task, outside the player (which never raises)
        cause = getattr(exc, "cause", None)
        if isinstance(cause, HomeNotShared):
            raise cause from None
        return error_record(job, job.scenario, cause if isinstance(cause, BaseException) else exc)
    except (exc_mod.WorkerCrashedError, exc_mod.NodeDiedError, exc_mod.LocalRayletDiedError,
            exc_mod.OutOfMemoryError, exc_mod.ObjectLostError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return error_record(job, job.scenario, WorkerDied(
            f"worker process died while playing this match, twice (Ray retried it once): "
            f"{type(exc).__name__}: {first}"))
    except exc_mod.RayError as exc:
        return error_record(job, job.scenario, exc)


def run_on_ray(jobs: list[Job], threads: int, done: Callable[[MatchRecord], None], say: Progress, tally: Tally,
               options: RayOptions) -> None:
    """Play ``jobs`` as Ray tasks; ``done(rec)`` (here, in order of arrival) stores each result.

    Ctrl-C cancels the tasks in flight (their matches are not stored) and re-raises; whatever
    ``done`` committed before stays, and the same command resumes.
    """
    ray = import_ray()
    device = effective_device(jobs[0].device, jobs[0].scenario)
    cpus, gpus = options.resources(threads, device)
    if gpus == 0 and device == "auto":
        # Auto would take a GPU the worker can see; a match with none reserved must not take one
        # Ray gave another match.
        jobs = [replace(j, device="cpu") for j in jobs]
    env = worker_env(threads)
    home = arena_home().absolute()  # where this driver's store and cache are: the workers must see it
    connected = _connect(ray, options)
    marker_path: Path | None = None
    in_flight: dict[Any, int] = {}
    try:
        marker, token, marker_path = _write_marker(home)
        check_home(ray, home, marker, token, env, cpus, gpus)
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=1, retry_exceptions=False,
                          runtime_env={"env_vars": env})(_play_task)
        say(f"ray: {_slots(ray, cpus, gpus)} match(es) at a time ({cpus:g} CPU, {gpus:g} GPU each) on "
            f"{len(_nodes(ray))} node(s)")
        queue = JobQueue(jobs)
        slots, slots_at = 0, -math.inf
        while queue or in_flight:
            if time.monotonic() - slots_at > 5.0:  # nodes come and go: look again now and then
                slots, slots_at = _slots(ray, cpus, gpus), time.monotonic()
            while len(in_flight) < slots:
                i = queue.pop()
                if i is None:  # the rest wait for a trojan being crafted, or there are none left
                    break
                job = jobs[i]
                ref = task.options(name=job.label).remote(job, threads, marker, token)
                in_flight[ref] = i
                tally.start()
                tally.began(ref, job.label)  # the pulse names it with its running time (no progress lines from Ray)
            if not in_flight:  # nothing could start: the cluster lost the nodes that fit a match
                slots, slots_at = _slots(ray, cpus, gpus), time.monotonic()
                if slots == 0:
                    raise _too_small(ray, cpus, gpus)
                continue
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=_WAIT_S)
            for ref in ready:
                i = in_flight.pop(ref)
                tally.ended(ref)
                rec = _outcome(ray, ref, jobs[i])
                queue.finish(i, rec.status == "ok")
                done(rec)
            tally.pulse()
    finally:
        for ref in in_flight:  # interrupted, or stopped by HomeNotShared: nothing keeps running for us
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        if marker_path is not None:
            marker_path.unlink(missing_ok=True)
        if connected:
            ray.shutdown()


@dataclass
class RayBackend:
    """Each match a Ray task (``run_on_ray``); built by ``arena.run.backends.make_backend("ray", ...)``."""

    options: RayOptions

    def run(self, jobs: list[Job], threads: int, done: Callable[[MatchRecord], None], say: Progress,
            tally: Tally) -> None:
        run_on_ray(jobs, threads, done, say, tally, self.options)
