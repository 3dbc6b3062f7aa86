"""`arena report` and `arena trigger show`: pictures of stored matches, checked in a real browser.

One small tournament (badnet against none and a two-epoch Neural Cleanse,
none against none, seed 0, on the tiny data) feeds every report test: the
pair that never met leaves a hole in the heatmap, and the models come
from the session's cache, and Neural Cleanse is cut to two epochs by the
scenario's [defenders.neural-cleanse] table so its recovered trigger costs
seconds. The browser test uses Debian's headless Chromium and is skipped,
saying why, where there is none.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from arena.cli import main
from arena.results.store import Store
from conftest import TINY_TOML, requires_fmnist

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)

REPORT_TOML = TINY_TOML.replace('name = "tiny"', 'name = "tiny-report"') + """
[defenders.neural-cleanse]
epochs = 2              # a recovered trigger in seconds; the real run is tested in test_defenders_sanitize_inspect
"""
PLAYED = {("badnet", "none"), ("badnet", "neural-cleanse"), ("none", "none")}  # none vs neural-cleanse: a hole


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def report_scenario(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report-scenario") / "tiny-report.toml"
    path.write_text(REPORT_TOML)
    return path


@pytest.fixture(scope="module")
def report_dir(report_scenario, tmp_path_factory) -> Path:
    """The report of a 2 x 2 tournament, written by the command line into a fresh folder."""
    from conftest import have_fashion_mnist

    if not have_fashion_mnist():
        pytest.skip("Fashion-MNIST not installed")
    for attackers, defenders in (("badnet", "none,neural-cleanse"), ("none", "none")):
        r = invoke("tournament", "-s", str(report_scenario), "-a", attackers, "-d", defenders)
        assert r.exit_code == 0, r.output
    out = tmp_path_factory.mktemp("report") / "site"
    r = invoke("report", str(report_scenario), "--out", str(out), "--bootstrap", "20", "--inputs", "3")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str((out / "index.html").absolute())  # stdout: only where it was written
    return out


def _pngs(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def _broken_links(page: Path) -> list[str]:
    """The relative links and pictures of a page that name no file (anchors within the page aside)."""
    text = page.read_text()
    targets = re.findall(r'(?:href|src)="([^"#][^"]*)"', text)
    return [t for t in targets if not (page.parent / t).is_file()]


@requires_fmnist
def test_report_folder_has_every_picture_and_links_every_cell(report_dir):
    index = (report_dir / "index.html").read_text()
    pictures = _pngs(index)
    for needed in ("img/ratings.png", "img/heatmap.png", "img/asr_cad.png", "img/gallery-badnet.png",
                   "img/gallery-none.png"):
        assert needed in pictures
    assert any(p.startswith("img/recovered-") for p in pictures)  # the inspector's trigger, labelled panels
    for src in pictures:
        with Image.open(report_dir / src) as img:
            assert img.format == "PNG" and img.width > 100 and img.height > 100
    # Self-contained: no absolute or remote reference, and every link and picture of every page is there.
    assert not re.search(r'(src|href)="(/|https?:|file:)', index)
    for page in [report_dir / "index.html", *(report_dir / "attackers").iterdir(), *(report_dir / "matches").iterdir()]:
        assert _broken_links(page) == [], page
    # The heatmap's image map: one area per pair that met, inside the picture, each opening that pair's match.
    with Image.open(report_dir / "img" / "heatmap.png") as img:
        width, height = img.size
    areas = re.findall(r'<area shape="rect" coords="(\d+),(\d+),(\d+),(\d+)" href="([^"]+)" alt="([^"]+)"', index)
    pairs = set()
    for x0, y0, x1, y1, href, alt in areas:
        assert 0 <= int(x0) < int(x1) <= width and 0 <= int(y0) < int(y1) <= height
        attacker, defender = alt.split(":")[0].split(" vs ")
        assert f"<h1>Match #{Path(href).stem}: {attacker} vs {defender}</h1>" in (report_dir / href).read_text()
        pairs.add((attacker, defender))
    assert pairs == PLAYED
    # A match page shows the report `arena matches show` prints, and its rounds as a table.
    store = Store(readonly=True)
    rec = next(r for r in store.matches(scenario="tiny-report")
               if (r.attacker, r.defender) == ("badnet", "neural-cleanse"))
    store.close()
    page = (report_dir / "matches" / f"{rec.id}.html").read_text()
    # ... and explains every abbreviation it uses.
    assert "<h2>What the metrics mean</h2>" in page and all(f"<dt>{k}</dt>" in page for k in ("ASR", "CAD", "MJS"))
    assert "outcome: attacker scores" in page and "<h2>Rounds</h2>" in page
    assert f'src="../img/recovered-{rec.id}.png"' in page
    # An attacker's page: its gallery, its matches, the triggers inspectors recovered from its trojan.
    page = (report_dir / "attackers" / "badnet.html").read_text()
    assert 'src="../img/gallery-badnet.png"' in page and f'href="../matches/{rec.id}.html"' in page
    assert f'src="../img/recovered-{rec.id}.png"' in page


@requires_fmnist
def test_report_opens_in_headless_chromium(report_dir, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no headless browser: install Debian's `chromium` (scripts/setup.sh does, as root) "
                    "to check that the report's images load")
    # A copy of the page, beside it (same relative links), with a script that records what loaded, plus
    # one image that cannot load: the check must see it fail, or it proves nothing.
    probe = """<img src="img/no-such-picture.png" alt="probe"><script>
    window.addEventListener('load', function () {
      var out = document.createElement('pre'); out.id = 'check';
      out.textContent = JSON.stringify({
        images: Array.from(document.images).map(function (i) { return [i.getAttribute('src'), i.naturalWidth]; }),
        tables: Array.from(document.querySelectorAll('table')).map(function (t) {
          return [t.rows.length, t.offsetHeight]; })});
      document.body.appendChild(out);
    });</script>"""
    with_trigger = next(p for p in sorted((report_dir / "matches").iterdir()) if "recovered-" in p.read_text())
    pages = ["index.html", "attackers/badnet.html", str(with_trigger.relative_to(report_dir))]
    for page in pages:
        check = report_dir / Path(page).with_name("_check.html")
        check.write_text((report_dir / page).read_text().replace("</body>", probe + "</body>"))
        profile = tempfile.mkdtemp(dir=tmp_path)
        run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                              "--no-first-run", "--disable-background-networking", "--disable-component-update",
                              "--disable-sync", f"--user-data-dir={profile}", "--dump-dom", check.as_uri()],
                             capture_output=True, text=True, timeout=120)
        check.unlink()
        found = re.search(r'<pre id="check">(.*?)</pre>', run.stdout, re.S)
        assert found, f"no check result from {browser}: {run.stderr[-2000:]}"
        result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
        images = dict(result["images"])
        assert images.pop("img/no-such-picture.png") == 0  # the probe: a missing picture is seen as missing
        assert images and all(w > 0 for w in images.values()), f"{page}: images that did not load: {images}"
        assert result["tables"] and all(rows > 1 and h > 0 for rows, h in result["tables"]), result["tables"]


@requires_fmnist
def test_trigger_show_saves_the_gallery(report_scenario, tmp_path):
    out = tmp_path / "badnet.png"
    r = invoke("trigger", "show", "badnet", "-s", str(report_scenario), "--out", str(out), "--inputs", "2")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(out.absolute())
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width >= 600 and img.height >= 300
    # Default place: the arena home, by scenario, attacker and seed.
    r = invoke("trigger", "show", "badnet", "-s", str(report_scenario), "--inputs", "1")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().endswith("triggers/tiny-report/badnet-seed0.png") and Path(r.stdout.strip()).is_file()


def test_gallery_of_a_blend_magnifies_and_labels(tmp_path):
    from arena.present.gallery import Gallery, gallery_figure

    clean = torch.rand(2, 1, 28, 28) * 0.9
    g = Gallery(attacker="blend", scenario="s", seed=0, target=0, clean=clean, stamped=clean + 0.01,
                labels=[1, 2], clean_pred=[1, 2], stamped_pred=[0, 2], class_names=None)
    assert g.magnification == pytest.approx(100.0, rel=1e-3)
    titles = [ax.get_title() for ax in gallery_figure(g).axes[:4]]
    assert titles[0] == "clean input" and titles[1] == "stamped input"
    assert titles[2].startswith("difference") and titles[3].startswith("difference x 100")


def test_recovered_trigger_panels_are_labelled():
    from arena.present.gallery import recovered_trigger_figure

    mask = torch.zeros(1, 28, 28)
    mask[0, 24:27, 24:27] = 1.0
    tensors = {"mask": mask, "pattern": torch.rand(1, 28, 28), "true_mask": mask, "true_pattern": torch.ones(1, 28, 28)}
    titles = [ax.get_title() for ax in recovered_trigger_figure(tensors).axes]
    assert titles == ["true trigger\n(mask x pattern)", "recovered mask\nL1 norm 9.0 (true 9.0)",
                      "recovered pattern", "recovered trigger\n(mask x pattern)"]
    no_true = recovered_trigger_figure({"mask": mask})  # a function trigger: the panel says so
    assert "not a mask" in no_true.axes[0].texts[0].get_text()


def test_heatmap_cell_boxes_lie_on_their_cells(tmp_path):
    import pandas as pd
    from matplotlib import colormaps

    from arena.present.charts import heatmap_figure
    from arena.present.gallery import save_figure

    matrix = pd.DataFrame([[0.0, 1.0, float("nan")], [0.5, 0.25, 0.9]], index=["a1", "a2"],
                          columns=["d1", "d2", "d3"])
    fig, boxes = heatmap_figure(matrix)
    assert set(boxes) == {("a1", "d1"), ("a1", "d2"), ("a2", "d1"), ("a2", "d2"), ("a2", "d3")}  # not the NaN
    png = save_figure(fig, tmp_path / "h.png")
    with Image.open(png) as img:
        rgb = img.convert("RGB")
        for (a, d), box in boxes.items():
            # A point inside the cell, off its centred label, has the cell's colour.
            x, y = (box.left + box.right) // 2, box.top + max(2, (box.bottom - box.top) // 6)
            want = [round(255 * c) for c in colormaps["coolwarm"](float(matrix.loc[a, d]))[:3]]
            assert all(abs(g - w) <= 3 for g, w in zip(rgb.getpixel((x, y)), want)), (a, d)


def test_report_errors_are_one_clear_line(tmp_path, monkeypatch, tiny_path, report_scenario):
    monkeypatch.setenv("ARENA_HOME", str(tmp_path / "empty-home"))
    r = CliRunner().invoke(main, ["report", "no-such-scenario"])
    assert r.exit_code == 2 and "unknown scenario 'no-such-scenario'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["report", str(tiny_path)])
    assert r.exit_code == 2
    assert "no stored matches for scenario 'tiny': run `arena tournament --scenario" in r.output
    r = CliRunner().invoke(main, ["trigger", "show", "no-such-attack", "-s", str(tiny_path)])
    assert r.exit_code == 2 and "no-such-attack" in r.output and "Traceback" not in r.output


def test_report_refuses_a_folder_that_is_not_a_report(tmp_path):
    from arena.present.report import ReportError, prepare_folder

    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    with pytest.raises(ReportError, match="not empty"):
        prepare_folder(other)
    assert (other / "thesis.tex").read_text() == "keep me"
    again = prepare_folder(tmp_path / "new")  # a report folder is emptied and rewritten
    (again / "img" / "old.png").write_bytes(b"x")
    prepare_folder(again)
    assert not (again / "img" / "old.png").exists()


def test_report_refuses_a_seed_without_matches(tmp_path):
    from arena.present.report import ReportError, write_report
    from arena.results.store import MatchRecord

    rec = MatchRecord(scenario="s", scenario_digest="d" * 16, attacker="badnet", attacker_version="1",
                      defender="none", defender_version="1", seed=0, rounds=1, status="ok", outcome=1.0, id=1)
    with pytest.raises(ReportError, match="at seed 5") as err:  # its models were never made: no training here
        write_report("s", "d" * 16, [rec], tmp_path / "out", seed=5)
    assert "stored seeds: 0" in str(err.value) and not (tmp_path / "out").exists()


def test_the_metrics_page_is_the_glossary():
    from pathlib import Path

    from arena.present.match_text import glossary_markdown

    assert (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text() == glossary_markdown()


def test_heatmap_orders_by_rating_and_category_and_marks_gate_decided_cells(tmp_path):
    from arena.present.charts import heatmap_figure
    from arena.results.endings import cell_marks
    from arena.results.leaderboard import games_from_records, ordered_matrix, outcome_matrix
    from arena.results.ratings import rate
    from arena.results.store import MatchRecord

    def rec(a, d, seed, outcome, reason="x"):
        return MatchRecord(scenario="s", scenario_digest="d", attacker=a, attacker_version="1", defender=d,
                           defender_version="1", seed=seed, rounds=1, status="ok", outcome=outcome, reason=reason,
                           metrics={"attack": {"asr": 0.9, "base_rate": 0.0}})

    recs = []
    for seed in (0, 1):
        recs += [rec("weak", "strip", seed, 0.1), rec("weak", "neural-cleanse", seed, 0.2),
                 rec("weak", "none", seed, 0.6), rec("strong", "strip", seed, 0.9),
                 rec("strong", "neural-cleanse", seed, 0.0, "attacker gate: the trojan loses 6.0 points"),
                 rec("strong", "none", seed, 1.0), rec("weak", "fine-pruning", seed, 1.0, "defender gate: costs 9"),
                 rec("strong", "fine-pruning", seed, 0.8)]
    categories = {"strip": "input_filtering", "neural-cleanse": "model_inspection", "none": "none",
                  "fine-pruning": "model_sanitization"}
    m = ordered_matrix(outcome_matrix(recs), rate(games_from_records(recs)), categories)
    assert list(m.index) == ["strong", "weak"]
    assert list(m.columns) == ["none", "strip", "fine-pruning", "neural-cleanse"]  # CATEGORIES order
    marks = cell_marks(recs)
    assert marks == {("strong", "neural-cleanse"): "A", ("weak", "fine-pruning"): "D"}
    fig, boxes = heatmap_figure(m, marks, legend="corner marks")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("A") == 1 and texts.count("D") == 1 and len(boxes) == 8


@requires_fmnist
def test_the_report_draws_from_the_cache_and_crafts_only_when_asked(report_dir, report_scenario, tmp_path,
                                                                   monkeypatch):
    """Matches without their trojans (imported into another home): the report leaves the galleries out,
    saying how to get them, and trains nothing; --craft makes them."""
    import os
    import shutil

    home = Path(os.environ["ARENA_HOME"])
    other = tmp_path / "home"
    other.mkdir()
    shutil.copy(home / "arena.db", other / "arena.db")
    shutil.copy(home / "referee.key", other / "referee.key")
    monkeypatch.setenv("ARENA_HOME", str(other))
    r = CliRunner().invoke(main, ["report", str(report_scenario), "--out", str(tmp_path / "a"), "--bootstrap", "20"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "not in the cache (arena report --craft makes it)" in r.output
    assert "training the benign" not in r.output and "crafts its trojan" not in r.output
    assert not (other / "cache" / "trojan").exists()
    r = CliRunner().invoke(main, ["report", str(report_scenario), "--out", str(tmp_path / "b"), "--bootstrap", "20",
                                  "--craft", "--inputs", "2"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "crafts its trojan" in r.output and list((tmp_path / "b" / "img").glob("gallery-*.png"))
