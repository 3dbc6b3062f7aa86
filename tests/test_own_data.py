"""Datasets described in a scenario file: image folders and npz pairs of any class count, size and
channel count, with one clear error per bad folder, and a match played on one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from arena.config.datasets import load_dataset, scenario_info
from arena.config.scenario import load_scenario
from arena.config.splits import bind_data, make_splits
from arena.core.errors import DatasetNotFound, ScenarioError
from arena.engine.referee import Referee


def _image_folder(root: Path, classes: int, side: int, mode: str, per_class: int = 6,
                  sizes: tuple[int, ...] | None = None) -> Path:
    rng = np.random.default_rng(classes * 100 + side)
    for split in ("train", "test"):
        for c in range(classes):
            d = root / split / f"class_{c:02d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                s = sizes[i % len(sizes)] if sizes else side
                shape = (s, s) if mode == "L" else (s, s, 3)
                arr = rng.integers(0, 256, shape, dtype=np.uint8)
                arr[..., :4, :4] = 20 * c  # something class-dependent, not that it matters here
                Image.fromarray(arr, mode).save(d / f"{i}.png")
    return root


def _scenario(tmp_path: Path, dataset: str, extra: str = "", trigger: int = 3) -> Path:
    p = tmp_path / "own.toml"
    p.write_text(f'''name = "own"
device = "cpu"
{dataset}

[training]
epochs = 2
batch_size = 32
retrain_epochs = 4

[trigger]
size = {trigger}

[data]
defender_fraction = 0.15
validation_fraction = 0.15

[scoring]
inputs = 40

[controls]
population = 1
{extra}''')
    return p


@pytest.fixture(autouse=True)
def _fresh_caches():
    load_dataset.cache_clear()
    yield
    load_dataset.cache_clear()


@pytest.mark.parametrize("classes,side,mode", [(3, 12, "L"), (5, 16, "RGB")])
def test_image_folder_of_any_class_count_size_and_channels(tmp_path, classes, side, mode):
    _image_folder(tmp_path / "imgs", classes, side, mode, per_class=24)
    s = load_scenario(str(_scenario(tmp_path, '[dataset]\nfolder = "imgs"\n')))
    info = scenario_info(s.dataset, s.dataset_source)
    assert (info.name, info.num_classes, info.size, info.channels) == ("imgs", classes, side, 1 if mode == "L" else 3)
    assert info.classes == tuple(f"class_{c:02d}" for c in range(classes))
    assert len(info.mean) == info.channels and all(0 < v < 1 for v in info.mean)
    sp = make_splits(bind_data(s), seed=0)
    assert sp.test.x.shape == (classes * 24, info.channels, side, side)
    assert 0.0 <= float(sp.test.x.min()) and float(sp.test.x.max()) <= 1.0
    assert sorted(set(sp.test.y.tolist())) == list(range(classes))


def test_mixed_sizes_resize_and_grayscale_conversion(tmp_path):
    _image_folder(tmp_path / "imgs", 2, 0, "RGB", sizes=(14, 20))
    s = load_scenario(str(_scenario(tmp_path, '[dataset]\nfolder = "imgs"\nsize = 16\nchannels = 1\n')))
    info = scenario_info(s.dataset, s.dataset_source)
    assert (info.size, info.channels) == (16, 1)


def _npz(root: Path, classes: int, shape: tuple[int, ...], n: int = 60 * 12) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for split, m in (("train", n), ("test", n // 3)):
        y = np.arange(m) % classes
        x = rng.integers(0, 80, (m, *shape), dtype=np.uint8)
        for i, c in enumerate(y):  # learnable: a bright block whose place is the class
            r, col = 4 * (c // 4), 4 * (c % 4) + 2
            x[i, r:r + 4, col:col + 4] = 255
        np.savez(root / f"{split}.npz", x=x, y=y)
    return root


def test_npz_with_more_than_ten_classes_plays_a_match(tmp_path):
    """Twelve classes of 20x20 colour images (channels last), target class 11: the class count comes
    from the data, the trigger and every split follow it, and a match plays through the sandbox."""
    _npz(tmp_path / "twelve", 12, (20, 20, 3))
    path = _scenario(tmp_path, '[dataset]\nnpz = "twelve"\nname = "twelve"\n', "\n[attack]\ntarget_class = 11\npoison_fraction = 0.1\n")
    s = load_scenario(str(path))
    assert s.dataset == "twelve" and s.dataset_source is not None and s.dataset_source.kind == "npz"
    referee = Referee(s)
    assert referee.scenario.data_digest  # a described dataset's content is always in the digest
    match = referee.play("badnet", "none", seed=0)
    assert match.record.status == "ok", match.record.error
    assert match.record.scenario_digest == referee.scenario.digest != s.digest
    attack = match.record.metrics["attack"]
    assert attack["benign_acc"] > 0.5 and attack["asr"] > 0.8  # model and backdoor work on twelve classes


def test_the_digest_ignores_where_the_files_lie_but_not_what_they_hold(tmp_path):
    _npz(tmp_path / "a" / "d", 3, (12, 12))
    _npz(tmp_path / "b" / "d", 3, (12, 12))
    one = bind_data(load_scenario(str(_scenario(tmp_path / "a", '[dataset]\nnpz = "d"\n'))))
    two = bind_data(load_scenario(str(_scenario(tmp_path / "b", '[dataset]\nnpz = "d"\n'))))
    assert one.digest == two.digest  # the same content elsewhere: the same matches, the same cache
    _npz(tmp_path / "c" / "d", 4, (12, 12))
    three = bind_data(load_scenario(str(_scenario(tmp_path / "c", '[dataset]\nnpz = "d"\n'))))
    assert three.digest != one.digest


def test_a_scenario_that_does_not_fit_its_data_says_so(tmp_path):
    _npz(tmp_path / "three", 3, (12, 12))
    s = load_scenario(str(_scenario(tmp_path, '[dataset]\nnpz = "three"\n', "\n[attack]\ntarget_class = 5\n")))
    with pytest.raises(ScenarioError, match=r"target_class' = 5 must lie in 0\.\.2"):
        bind_data(s)


def _bad_unreadable(root: Path) -> None:
    _image_folder(root, 2, 12, "L", per_class=2)
    (root / "train" / "class_00" / "broken.png").write_bytes(b"not a png")


def _bad_one_class(root: Path) -> None:
    _image_folder(root, 1, 12, "L", per_class=2)


def _bad_no_classes(root: Path) -> None:
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()


def _bad_mixed_sizes(root: Path) -> None:
    _image_folder(root, 2, 0, "L", sizes=(12, 16))


@pytest.mark.parametrize("make,needle,hint", [
    (_bad_no_classes, "has no class folders", "ImageFolder layout"),
    (_bad_one_class, "one class only", "a folder per class"),
    (_bad_unreadable, "cannot read image", "remove or replace"),
    (_bad_mixed_sizes, "images of 2 sizes", "dataset.size"),
])
def test_each_bad_folder_gets_one_clear_error(tmp_path, make, needle, hint):
    make(tmp_path / "imgs")
    s = load_scenario(str(_scenario(tmp_path, '[dataset]\nfolder = "imgs"\n')))
    with pytest.raises(DatasetNotFound) as err:
        bind_data(s)
    assert needle in str(err.value) and hint in (err.value.hint or "")


@pytest.mark.parametrize("table,needle", [
    ('[dataset]\nsize = 16\n', "exactly one of folder, npz, torchvision"),
    ('[dataset]\nfolder = "x"\nnpz = "y"\n', "exactly one of"),
    ('[dataset]\nfolder = "x"\ncolour = 3\n', "dataset.colour"),
    ('[dataset]\nfolder = "x"\nchannels = 2\n', "1 or 3"),
    ('[dataset]\nfolder = "x"\nsize = 4\n', "at least 8"),
])
def test_malformed_dataset_tables_name_the_key(tmp_path, table, needle):
    with pytest.raises(ScenarioError, match=needle):
        load_scenario(str(_scenario(tmp_path, table)))


def _idx(path: Path, arr: np.ndarray) -> None:
    """An uncompressed IDX file (the MNIST format): magic 0x08 (uint8) and the shape, big-endian."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_a_torchvision_dataset_class_whose_files_are_on_disk(tmp_path):
    """`[dataset] torchvision = "MNIST"` reads torchvision's own layout under `root`, never downloading."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for prefix, n in (("train", 120), ("t10k", 30)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    s = load_scenario(str(_scenario(tmp_path, '[dataset]\ntorchvision = "MNIST"\nroot = "data"\nsize = 16\n')))
    info = scenario_info(s.dataset, s.dataset_source)
    assert (info.name, info.num_classes, info.size, info.channels) == ("mnist", 10, 16, 1)
    assert info.classes[0].startswith("0")  # torchvision's class names come along
    # Absent files: one clear error, and no download unless asked for.
    (tmp_path / "x").mkdir()
    gone = load_scenario(str(_scenario(tmp_path / "x", '[dataset]\ntorchvision = "MNIST"\nroot = "nowhere"\n')))
    with pytest.raises(DatasetNotFound, match="not found under") as err:
        bind_data(gone)
    assert "download = true" in (err.value.hint or "")


@pytest.mark.slow
@pytest.mark.parametrize("classes,shape,target,trigger", [(12, (20, 20, 3), 11, 3), (3, (10, 10), 2, 2)])
def test_every_agent_plays_on_other_class_counts_and_sizes(tmp_path, classes, shape, target, trigger):
    """Every attacker against no defence and badnet against every defender, at micro settings, on
    twelve-class 20x20 colour and three-class 10x10 grayscale data: no agent assumes ten classes or
    a 28- or 32-pixel image. On 10x10 the trigger is 2x2 (4% of the pixels: a 3x3 one would be over
    the 5% area budget and end every match at the attacker gate, before any defender deploys)."""
    import dataclasses

    from arena.config.micro import MICRO_ATTACKERS, MICRO_DEFENDERS, overlay
    from arena.plugins import discover

    _npz(tmp_path / "data", classes, shape, n=100 * classes)
    path = _scenario(tmp_path, '[dataset]\nnpz = "data"\n', f"\n[attack]\ntarget_class = {target}\n"
                                                             "poison_fraction = 0.1\n", trigger=trigger)
    sc = load_scenario(str(path))
    sc = dataclasses.replace(sc, attackers=overlay(sc.attackers, MICRO_ATTACKERS),
                             defenders=overlay(sc.defenders, MICRO_DEFENDERS))
    referee = Referee(sc)
    pairs = [(a, "none") for a in discover("attacker") if a != "blended"] + \
            [("badnet", d) for d in discover("defender") if d != "none"]
    broken, deployed = [], 0
    for a, d in pairs:
        rec = referee.play(a, d, seed=0).record
        if rec.status != "ok" or "forfeit" in rec.metrics:
            broken.append(f"{a} vs {d}: {rec.error or rec.reason}")
        deployed += d != "none" and not rec.reason.startswith("attacker gate")
    assert broken == []
    assert deployed == len(pairs) - len([a for a, d in pairs if d == "none"])  # every defender met the trojan
