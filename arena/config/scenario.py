"""Scenarios: named, versioned match settings read from ``scenarios/NAME.toml``.

A scenario fixes everything that determines a match except the agents and the
seed: dataset, architecture, training budget, trigger, target class, poison
fraction, threat model, budgets and scoring size. Its ``digest`` keys the
match store, so editing a scenario file never mixes results of two settings
(the artifact cache is keyed by the settings each artifact depends on).

Validation is strict (unknown keys are errors, not silently ignored): a typo
in a scenario file must not quietly play a different game.

Seeds come in two lists. ``seeds`` are the *test* seeds: the ones tournaments,
published tables and leaderboards play (``arena match`` defaults to the
first). ``development_seeds`` (default none) are the seeds on which agent
defaults, decision rules and scenario settings may be tuned, for instance with
``benchmarks/tune_reformers.py``. The two lists may not share a seed: a rule
chosen by looking at a seed's results says nothing fresh about that seed.
Neither list changes what a match plays (a match record carries its seed), so
neither is part of the scenario's ``digest``: seeds can be added to a
scenario without re-keying the matches already played.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from arena.core.errors import ScenarioError
from arena.config.dataset_info import DATASET_INFO
from arena.config.sources import DatasetSource, parse_source
from arena.config.specs import canonical_spec, is_file_spec

DATASETS = ("fashion-mnist", "mnist", "cifar10")
# torchvision classifiers offered by name (arena.api.tv_models, which splits each into the arena's model contract).
TORCHVISION_NAMES = ("resnet18", "resnet34", "resnet50", "vgg11_bn", "vgg13_bn", "vgg16_bn", "densenet121",
                     "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "vit_b_16")
ARCHITECTURES = ("small-cnn", "small-resnet", "resnet18", *(f"torchvision:{n}" for n in TORCHVISION_NAMES))
REVEALS = ("full", "category", "none")
POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center", "random")
SHAPES = ("square", "random")
PATTERNS = ("checkerboard", "white", "black", "random")
OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")

# A scenario's name becomes a file stem (leaderboards/NAME.md), so it may not
# climb out of a folder or hide itself.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_EPOCHS = 10_000  # more is a typo, not a budget: it would train for weeks
MAX_SEED = 2**31 - 1  # seeds go to torch and numpy generators; keep them in a portable int32 range


@dataclass(frozen=True)
class Training:
    """How the benign model is trained and how long an attacker may re-train."""

    epochs: int = 4
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 2e-4
    augment: bool = False
    retrain_epochs: int = 2
    retrain_lr: float = 0.01


@dataclass(frozen=True)
class DataSpec:
    """Dataset splits; ``train_limit``/``test_limit`` shrink data for tests."""

    defender_fraction: float = 0.05
    validation_fraction: float = 0.05
    train_limit: int | None = None
    test_limit: int | None = None


@dataclass(frozen=True)
class TriggerSpec:
    """A patch trigger. ``alpha`` is transparency: 0 opaque, 1 invisible.

    ``size = 1`` is a single-pixel trigger; ``shape = "random"`` scatters
    size*size pixels over the image (paper Table 15); ``position = "random"``
    stamps the patch at a random place per input.
    """

    size: int = 3
    position: str = "bottom-right"
    pattern: str = "checkerboard"
    alpha: float = 0.0
    shape: str = "square"


@dataclass(frozen=True)
class AttackSpec:
    """The attack's setting. ``mixing``: how poison enters training (paper 6.2):
    ``batch`` (default), ``dataset`` or ``loss`` (arena.api.poison). ``from_scratch``:
    train the trojan from a fresh initialization for ``training.epochs``
    instead of re-training the benign model for ``training.retrain_epochs``
    (paper RQ4)."""

    target_class: int = 0
    poison_fraction: float = 0.01
    mixing: str = "batch"
    from_scratch: bool = False


@dataclass(frozen=True)
class ThreatModel:
    """What the attacker learns of the defender before crafting.

    ``full``: the defender object itself (its method is public, paper 6.3);
    ``category``: only the defense category; ``none``: nothing.
    """

    reveal: str = "full"


@dataclass(frozen=True)
class Budgets:
    """Outcome-rule budgets, in fractions (0.03 = 3 accuracy points), and the agents' limits.

    A trigger must stay within a perturbation budget on every stamped test
    input: it may change at most ``trigger_area`` of the pixel positions (a
    patch: L0), or change any number of them by at most ``trigger_linf``
    (a blend or warp: L-inf); an input over both is over budget. Each
    ``craft`` and ``deploy`` (and a deployment's scoring queries) runs in the
    agent's own process under a wall-time limit in seconds and a memory limit
    (resident set, MB); an agent over a limit loses the match.
    """

    attack_cad: float = 0.03
    defense_cad: float = 0.05
    fpr: float = 0.05
    fpr_tolerance: float = 0.02
    trigger_area: float = 0.05
    trigger_linf: float = 0.3
    # Gates allow for measurement error: a CAD or FPR over its budget gates only when it is over by
    # more than ``gate_z`` of its own standard errors (one-sided; 1.645: 95%). 0: plain thresholds.
    gate_z: float = 1.645
    model_fpr: float = 0.05  # benign models of the control population a defender may flag
    craft_seconds: float = 3600.0
    deploy_seconds: float = 3600.0
    memory_mb: int = 16384


@dataclass(frozen=True)
class Scoring:
    """How many test inputs the referee scores a deployment on.

    ``inputs``: clean and trigger inputs each filter scores (TPR, FPR, AUROC).
    ``passes``: forward passes of the model spent on each of the clean and
    trigger test sets when measuring a deployment's accuracy and ASR. A
    deployment that runs k passes per input (randomized smoothing: one per
    noise sample) is scored on the first ``passes // k`` inputs of each set,
    and the undefended reference (for ARD and CAD) on the same inputs. A
    deployment with one pass per input (every other defender) is always
    scored on the whole test split. None: no budget.
    """

    inputs: int = 1000
    passes: int | None = None
    # Batch-aware filters (activation clustering, spectral signatures) score windows of ``window``
    # inputs of which a share ``trigger_share`` are trigger inputs, as deployment traffic with a
    # minority of attacks would look; their FPR is taken on the clean inputs of those windows.
    trigger_share: float = 0.1
    window: int = 100


@dataclass(frozen=True)
class Controls:
    """The defender's control: a population of benign models per seed, not one coin flip.

    Member 0 is the seed's benign model (the one attackers start from); members
    1..population-1 are trained the same way from other initializations and
    data orders. Each is trained once and cached, and the defender is run on
    each in its own process. Its model-level false-positive rate (benign models
    it flags) is judged against ``budgets.model_fpr`` on the population pooled
    over every seed (``arena.results.usability``: an exact one-sided binomial
    test at 5%), not per seed.
    """

    population: int = 5


@dataclass(frozen=True)
class Scenario:
    """One scenario file, validated.

    ``seeds``: the test seeds, played by tournaments and published tables.
    ``development_seeds``: the seeds agent defaults and decision rules may be
    tuned on; disjoint from ``seeds``. Both lists are left out of ``digest``
    (they change no match).
    """

    name: str
    dataset: str = "fashion-mnist"
    architecture: str = "small-cnn"
    description: str = ""
    version: int = 1
    device: str = "auto"
    seeds: tuple[int, ...] = (0,)
    development_seeds: tuple[int, ...] = ()
    rounds: int = 1
    training: Training = field(default_factory=Training)
    data: DataSpec = field(default_factory=DataSpec)
    trigger: TriggerSpec = field(default_factory=TriggerSpec)
    attack: AttackSpec = field(default_factory=AttackSpec)
    threat: ThreatModel = field(default_factory=ThreatModel)
    budgets: Budgets = field(default_factory=Budgets)
    scoring: Scoring = field(default_factory=Scoring)
    controls: Controls = field(default_factory=Controls)
    # Per-agent hyper-parameter overrides: {"imc": {"pgd_iters": 5}, ...}.
    # Where a CPU scenario reduces a paper default, it says so here.
    attackers: dict[str, dict[str, Any]] = field(default_factory=dict)
    defenders: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""
    # Content hash of the data this scenario was bound to (``arena.config.splits.bind_data``) when it
    # is not the data its dataset name stands for; never written in a file.
    data_digest: str = ""
    # A dataset described by a ``[dataset]`` table (an image folder, npz files, a torchvision class);
    # ``dataset`` is then its name. None for the built-in datasets.
    dataset_source: DatasetSource | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        if not self.data_digest:  # the standard data: the digest of every scenario stays what it was
            d.pop("data_digest")
        if self.dataset_source is None:
            d.pop("dataset_source")
        d["seeds"] = list(self.seeds)
        d["development_seeds"] = list(self.development_seeds)
        return d

    @property
    def digest(self) -> str:
        """Content hash of every setting (not the file's path or comments) and, once bound to data
        other than the standard copy of its dataset, of that data (``bind_data``).

        The seed lists are left out: ``seeds`` says which matches a tournament
        plays, ``development_seeds`` where agents were tuned, and neither changes
        any one match (a match record carries its own seed). So adding test seeds
        keeps the digest, and the stored matches it keys, of the seeds already
        played. Digests written before this rule (``legacy_digests``) are mapped
        on reading (``arena.results.digests``).
        """
        return self._hash(seeds=None)

    @property
    def legacy_digests(self) -> tuple[str, ...]:
        """The digests this scenario had until 2026-12-06, when the ``seeds`` list was part of it: one for
        each prefix of today's list, since seeds are added at the end (fmnist-cnn's 10-14 grew to 10-29).
        Stores and match files written before then carry one of these."""
        return tuple(self._hash(seeds=self.seeds[:k]) for k in range(1, len(self.seeds) + 1))

    def _hash(self, seeds: tuple[int, ...] | None) -> str:
        d = self.to_dict()
        d.pop("development_seeds")
        if seeds is None:
            d.pop("seeds")
        else:
            d["seeds"] = list(seeds)
        if self.dataset_source is not None:  # where the files lie is no setting: their content hash is
            d["dataset_source"] = self.dataset_source.identity()
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def agent_params(self, role: str, name: str) -> dict[str, Any]:
        """The ``[attackers.NAME]`` / ``[defenders.NAME]`` overrides of an agent. A file agent's table
        may be keyed by any spelling of its spec (``./x.py:A``, ``x.py:A``): they are one player."""
        table = self.attackers if role == "attacker" else self.defenders
        if name in table:
            return dict(table[name])
        if is_file_spec(name):
            want = canonical_spec(name)
            for key, params in table.items():
                if is_file_spec(key) and canonical_spec(key) == want:
                    return dict(params)
        return {}


_SECTIONS: dict[str, type] = {
    "training": Training,
    "data": DataSpec,
    "trigger": TriggerSpec,
    "attack": AttackSpec,
    "threat": ThreatModel,
    "budgets": Budgets,
    "scoring": Scoring,
    "controls": Controls,
}

_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "dataset"): DATASETS,
    ("", "architecture"): ARCHITECTURES,
    ("", "device"): DEVICES,
    ("threat", "reveal"): REVEALS,
    ("trigger", "position"): POSITIONS,
    ("trigger", "pattern"): PATTERNS,
    ("trigger", "shape"): SHAPES,
    ("attack", "mixing"): ("batch", "dataset", "loss"),
    ("training", "optimizer"): OPTIMIZERS,
}

_FRACTIONS = {
    ("data", "defender_fraction"),
    ("data", "validation_fraction"),
    ("trigger", "alpha"),
    ("attack", "poison_fraction"),
    ("budgets", "attack_cad"),
    ("budgets", "defense_cad"),
    ("budgets", "fpr"),
    ("budgets", "fpr_tolerance"),
    ("budgets", "trigger_area"),
    ("budgets", "trigger_linf"),
    ("scoring", "trigger_share"),
    ("budgets", "model_fpr"),
}


def _type_ok(value: Any, annotation: Any) -> bool:
    ann = str(annotation)
    if ann == "bool":
        return isinstance(value, bool)
    if ann == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if ann == "int | None":
        return value is None or (isinstance(value, int) and not isinstance(value, bool))
    if ann == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ann == "str":
        return isinstance(value, str)
    return True


def _build_section(cls: type, section: str, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: [{section}] must be a table, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise ScenarioError(
                f"{where}: unknown key '{section}.{key}'",
                hint=f"allowed keys in [{section}]: {', '.join(sorted(fields))}",
            )
        _check_value(section, key, value, fields[key].type, where)
        values[key] = float(value) if fields[key].type == "float" else value
    return cls(**values)


def _check_value(section: str, key: str, value: Any, annotation: Any, where: str) -> None:
    label = f"{section}.{key}" if section else key
    if not _type_ok(value, annotation):
        raise ScenarioError(f"{where}: '{label}' must be {annotation}, got {value!r}")
    # TOML spells nan and inf; every comparison below is silently false for nan.
    if isinstance(value, float) and not math.isfinite(value):
        raise ScenarioError(f"{where}: '{label}' = {value!r} is not a finite number",
                            hint="nan and inf are not allowed; use a finite number")
    choices = _CHOICES.get((section, key))
    if (section, key) == ("", "architecture"):  # and the installed architecture plugins, by name
        choices = (*ARCHITECTURES, *sorted(ep.name for ep in entry_points(group="arena.architectures")))
    if choices and value not in choices:
        raise ScenarioError(
            f"{where}: '{label}' = {value!r} is not allowed",
            hint=f"allowed values: {', '.join(choices)}",
        )
    if (section, key) in _FRACTIONS and not 0.0 <= float(value) <= 1.0:
        raise ScenarioError(f"{where}: '{label}' = {value!r} must lie in [0, 1]")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise ScenarioError(f"{where}: '{label}' = {value!r} must not be negative")


def scenario_from_dict(raw: dict[str, Any], where: str = "<scenario>") -> Scenario:
    """Validate a parsed TOML document and build a ``Scenario``."""
    raw = dict(raw)
    top_fields = {f.name: f for f in dataclasses.fields(Scenario) if f.name not in ("source", "data_digest", "dataset_source")}
    if "name" not in raw or not isinstance(raw["name"], str) or not raw["name"]:
        raise ScenarioError(f"{where}: missing key 'name'", hint='add name = "my-scenario" at the top')
    if not is_safe_name(raw["name"]):
        raise ScenarioError(
            f"{where}: 'name' = {raw['name']!r} is not allowed: it names files such as leaderboards/NAME.md",
            hint="use letters, digits, '.', '_' and '-', starting with a letter or digit, without '..'",
        )
    values: dict[str, Any] = {"source": where}
    for key, value in raw.items():
        if key not in top_fields:
            raise ScenarioError(
                f"{where}: unknown key '{key}'",
                hint=f"allowed top-level keys and tables: {', '.join(sorted(top_fields))}",
            )
        if key == "dataset" and isinstance(value, dict):
            values["dataset_source"] = parse_source(value, where)
            values["dataset"] = values["dataset_source"].name
        elif key in _SECTIONS:
            values[key] = _build_section(_SECTIONS[key], key, value, where)
        elif key in ("attackers", "defenders"):
            if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                raise ScenarioError(
                    f"{where}: [{key}] must hold one table per agent",
                    hint=f"e.g. [{key}.strip] samples = 32",
                )
            for agent, params in value.items():
                validate_agent_params(key[:-1], agent, params, where)
            values[key] = {k: dict(v) for k, v in value.items()}
        elif key == "seeds":
            if not isinstance(value, list) or not value or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in value
            ):
                raise ScenarioError(f"{where}: 'seeds' must be a non-empty list of integers in 0..{MAX_SEED}, "
                                    f"got {value!r}")
            values[key] = tuple(value)
        elif key == "development_seeds":
            if not isinstance(value, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in value
            ):
                raise ScenarioError(f"{where}: 'development_seeds' must be a list of integers in 0..{MAX_SEED} "
                                    f"(it may be empty), got {value!r}")
            values[key] = tuple(value)
        else:
            _check_value("", key, value, top_fields[key].type, where)
            values[key] = value
    scenario = Scenario(**values)
    _check_consistency(scenario, where)
    return scenario


def _check_consistency(s: Scenario, where: str) -> None:
    shared = sorted(set(s.seeds) & set(s.development_seeds))
    if shared:
        raise ScenarioError(
            f"{where}: seed{'s' if len(shared) > 1 else ''} {', '.join(map(str, shared))} "
            f"{'are' if len(shared) > 1 else 'is'} in both 'seeds' {list(s.seeds)} and "
            f"'development_seeds' {list(s.development_seeds)}",
            hint="a seed that rules were tuned on cannot also test them: keep it in 'development_seeds' and "
                 "give 'seeds' fresh seeds that no rule was chosen on",
        )
    if s.rounds < 1:
        raise ScenarioError(f"{where}: 'rounds' must be at least 1, got {s.rounds}")
    if s.attack.target_class < 0:
        raise ScenarioError(f"{where}: 'attack.target_class' must not be negative")
    if s.trigger.size < 1:
        raise ScenarioError(f"{where}: 'trigger.size' must be at least 1")
    if s.data.defender_fraction + s.data.validation_fraction >= 0.5:
        raise ScenarioError(f"{where}: defender + validation fractions leave the attacker too little data")
    if s.dataset_source is None:  # a described dataset's classes and size are checked once it is read
        info = DATASET_INFO[s.dataset]
        if s.attack.target_class >= info.num_classes:
            raise ScenarioError(f"{where}: 'attack.target_class' must lie in 0..{info.num_classes - 1} "
                                f"for {s.dataset}")
        if s.trigger.size > info.size:
            raise ScenarioError(f"{where}: 'trigger.size' = {s.trigger.size} is larger than the "
                                f"{info.size}x{info.size} images of {s.dataset}", hint=f"use a size in 1..{info.size}")
    if not 0.0 < s.scoring.trigger_share < 1.0:
        raise ScenarioError(f"{where}: 'scoring.trigger_share' = {s.scoring.trigger_share} must lie strictly "
                            "between 0 and 1", hint="the share of trigger inputs in a filter's window, e.g. 0.1")
    if not 1 <= s.controls.population <= 100:
        raise ScenarioError(f"{where}: 'controls.population' = {s.controls.population} must lie in 1..100",
                            hint="benign models per seed for the defender's control run; 5 or more for verdicts")
    if s.scoring.window < 2:
        raise ScenarioError(f"{where}: 'scoring.window' = {s.scoring.window} must be at least 2")
    if s.scoring.passes is not None and s.scoring.passes < 1:
        raise ScenarioError(f"{where}: 'scoring.passes' must be at least 1 (or left out: score all of test)")
    if s.scoring.inputs < 1:
        raise ScenarioError(f"{where}: 'scoring.inputs' = {s.scoring.inputs} must be at least 1")
    t = s.training
    for key, value in (("epochs", t.epochs), ("batch_size", t.batch_size)):
        if value < 1:
            raise ScenarioError(f"{where}: 'training.{key}' = {value} must be at least 1")
    for key, value in (("epochs", t.epochs), ("retrain_epochs", t.retrain_epochs)):
        if value > MAX_EPOCHS:
            raise ScenarioError(f"{where}: 'training.{key}' = {value} is more than {MAX_EPOCHS}",
                                hint=f"use 0..{MAX_EPOCHS} epochs")
    for key, lr in (("lr", t.lr), ("retrain_lr", t.retrain_lr)):
        if lr <= 0:
            raise ScenarioError(f"{where}: 'training.{key}' = {lr!r} must be greater than 0")


def is_safe_name(name: str) -> bool:
    """Whether ``name`` can be a file stem in any folder without leaving it."""
    return SAFE_NAME.fullmatch(name) is not None and ".." not in name


def _leaves(value: Any) -> list[Any]:
    """The scalars inside a TOML value (arrays and inline tables opened up)."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]


def validate_agent_params(role: str, name: str, params: dict[str, Any], where: str = "") -> None:
    """Reject agent hyper-parameters that no agent can mean, whatever its signature.

    Integer parameters are counts, sizes and iterations, so a negative one is
    a typo; nan and inf pass every ``<``/``>`` check inside an agent and
    poison training silently. Called when a scenario is loaded and when an
    agent is constructed (``arena.plugins.make_agent``).
    """
    prefix = f"{where}: " if where else ""
    for key, value in params.items():
        for v in _leaves(value):
            if isinstance(v, float) and not math.isfinite(v):
                raise ScenarioError(f"{prefix}[{role}s.{name}] {key} = {value!r} is not a finite number",
                                    hint="nan and inf are not allowed; use a finite number")
            if isinstance(v, int) and not isinstance(v, bool) and v < 0:
                raise ScenarioError(f"{prefix}[{role}s.{name}] {key} = {value!r} must not be negative",
                                    hint="integer parameters count samples, iterations or sizes: use 0 or more")


def _builtin_dir() -> Path:
    """The built-in scenarios: the package ``arena_scenarios`` (the folder scenarios/, installed).

    Without it (a checkout on PYTHONPATH, never installed) the checkout's own folder.
    """
    try:
        folder = importlib.resources.files("arena_scenarios")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "scenarios"
    # Wheels and editable installs are folders on disk; a zipped install has no Path to glob.
    return folder if isinstance(folder, Path) else Path(str(folder))


def scenario_dirs() -> list[Path]:
    """Where named scenarios are looked up, in order: ``ARENA_SCENARIO_PATH``, ./scenarios, the built-ins."""
    dirs = [Path(p) for p in os.environ.get("ARENA_SCENARIO_PATH", "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / "scenarios")
    dirs.append(_builtin_dir())
    seen: list[Path] = []
    for d in dirs:
        if d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def available_scenarios() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in scenario_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                found.setdefault(p.stem, p)
    return found


def looks_like_path(name_or_path: str) -> bool:
    """Whether a scenario argument is a file path (ends in .toml or has a folder) rather than a name."""
    seps = {os.sep, os.altsep or os.sep}
    return name_or_path.endswith(".toml") or any(sep in name_or_path for sep in seps)


def _scenario_path(name_or_path: str, relative_to: Path | None = None) -> Path:
    """The file a scenario argument names: a path (relative to ``relative_to`` when given) or a known name."""
    if looks_like_path(name_or_path):
        path = Path(name_or_path)
        if relative_to is not None and not path.is_absolute():
            path = relative_to / path
        if not path.is_file():
            raise ScenarioError(f"scenario file not found: {path}")
        return path
    known = available_scenarios()
    if name_or_path not in known:
        raise ScenarioError(
            f"unknown scenario '{name_or_path}'",
            hint=f"known scenarios: {', '.join(known) or '(none)'}; or pass a path to a .toml file",
        )
    return known[name_or_path]


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top: tables merge key by key, any other value replaces."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (_merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict)
                    else value)
    return out


def _read_raw(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A scenario file's TOML, with its ``based_on`` scenario (if any) resolved underneath it."""
    if path.resolve() in chain:
        loop = " -> ".join(str(p) for p in chain + (path.resolve(),))
        raise ScenarioError(f"{path}: 'based_on' loops back to itself ({loop})",
                            hint="a variant names its base scenario; the base must not name the variant")
    try:
        text = path.read_bytes().decode("utf-8")  # TOML is UTF-8 whatever the locale says
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})",
                            hint="save the scenario file as UTF-8") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    base = raw.pop("based_on", None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base:
        raise ScenarioError(f"{path}: 'based_on' must be a scenario name or a .toml path, got {base!r}",
                            hint='e.g. based_on = "fmnist-cnn"')
    if "name" not in raw:  # the base's name would make the variant's matches look like the base's
        raise ScenarioError(f"{path}: a scenario with 'based_on' needs its own 'name'",
                            hint=f'add name = "{path.stem}" at the top')
    try:
        base_path = _scenario_path(base, relative_to=path.parent)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: 'based_on' = {base!r}: {exc.args[0]}", hint=exc.hint) from None
    inherited = _read_raw(base_path, chain + (path.resolve(),))
    # A variant is its own scenario: it keeps only the knobs it inherits, not the base's
    # description (which would describe the base).
    inherited.pop("description", None)
    return _merged(inherited, raw)


def load_scenario(name_or_path: str) -> Scenario:
    """Load a scenario by name (``fmnist-cnn``) or by path (``./my.toml``).

    A file may start from another scenario with ``based_on = "NAME"`` (or a
    .toml path, relative to the file) and set only what differs: its tables
    merge key by key over the base's. It needs its own ``name``; the result is
    an ordinary scenario with its own digest.
    """
    path = _scenario_path(name_or_path)
    return scenario_from_dict(_read_raw(path), where=str(path))


DEFAULT_SCENARIO = "fmnist-cnn"
