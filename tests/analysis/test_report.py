"""Reports: seed statistics against scipy, warnings, the self-contained page, --compare, and a real browser."""
from __future__ import annotations

import base64
import math
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from analysis import report as report_mod
from analysis.compare import compare
from analysis.stats import cell_stats, describe_difference, format_cell, holm, paired, seed_warning, t_interval, welch
from sweeps.results.store import Store
from trainables.config import resolve

REPO = Path(__file__).resolve().parents[2]

# --- the statistics, against values computed here by hand with scipy -------------------------------------------


def test_t_interval_is_student_t():
    x = [52.0, 55.5, 53.25, 57.0]
    mean, half, n = t_interval(x)
    expected = sps.t.ppf(0.975, 3) * np.std(x, ddof=1) / math.sqrt(4)
    assert n == 4 and mean == pytest.approx(np.mean(x)) and half == pytest.approx(expected)


def test_single_seed_has_no_interval_and_says_so():
    mean, half, n = t_interval([61.0])
    assert (mean, n) == (61.0, 1) and math.isnan(half)
    table = cell_stats(pd.DataFrame({"k": ["a", "a", "b"], "v": [1.0, 3.0, 7.0]}), ["k"], "v")
    b = table.set_index("k").loc["b"]
    assert b["n"] == 1 and math.isnan(b["ci"]) and math.isnan(b["std"])
    assert format_cell(b["mean"], b["ci"], b["n"]) == "7.0 (n=1, no CI)"
    a = table.set_index("k").loc["a"]
    assert format_cell(a["mean"], a["ci"], a["n"]) == f"2.0 ± {sps.t.ppf(0.975, 1) * 1.0:.1f} (n=2)"


def test_seed_warning_below_three():
    assert "2 seed(s)" in seed_warning([3, 2, 5])
    assert seed_warning([3, 4]) == ""


def test_paired_matches_ttest_rel_and_reports_in_words():
    seeds = [0, 1, 2, 3, 4]
    he = [60.0, 58.0, 63.0, 61.0, 59.5]
    normal = [45.0, 47.0, 46.5, 44.0, 48.0]
    df = pd.DataFrame({"init": ["he"] * 5 + ["normal"] * 5, "depth": 2, "seed": seeds * 2, "acc": he + normal})
    res = paired(df, "init", "he", "normal", "acc", pair_on=["seed"], by=["depth"]).iloc[0]
    d = np.subtract(he, normal)
    assert res["n"] == 5 and res["diff"] == pytest.approx(d.mean())
    assert res["p"] == pytest.approx(sps.ttest_rel(he, normal).pvalue)
    assert res["ci"] == pytest.approx(sps.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5))
    assert res["d_z"] == pytest.approx(d.mean() / d.std(ddof=1))
    assert res["statement"].startswith(f"he better than normal by {d.mean():.1f} ± {res['ci']:.1f} points")
    assert "5 seeds, paired t p" in res["statement"]


def test_holm_adjustment_by_hand():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, float("nan"), 0.9]) == pytest.approx([1.0, float("nan"), 1.0], nan_ok=True)  # m = 2, monotone
    assert holm([]) == []


def test_paired_table_states_holm_adjusted_p_per_cell(tmp_path):
    from analysis.report import Report
    from analysis.tables import paired_table
    rng = np.random.default_rng(0)
    trials = pd.DataFrame([dict(status="completed", init=init, depth=depth, seed=seed,
                                acc=0.5 + (0.05 if init == "he" else 0) + rng.normal(0, 0.02))
                           for init in ("he", "normal") for depth in (2, 5, 10) for seed in range(4)])
    report = Report(tmp_path, {}, "t")
    res = paired_table(report, "paired", trials, "acc", factor="init", a="he", b="normal", keys=["init", "depth"],
                       caption="He vs normal")
    assert list(res["p_holm"]) == pytest.approx(holm(res["p"]))
    statements, table = report.parts
    assert statements.place == "findings"  # the statements answer; the table of numbers backs them
    text = statements.body
    for _, r in res.iterrows():
        assert f"depth={r['depth']}:" in text
    assert text.count("(Holm-adjusted over 3 cells: ") == 3
    assert table.place == "details" and "p_holm = p adjusted for the 3 cells" in table.about


def test_paired_drops_unpaired_seeds():
    df = pd.DataFrame({"init": ["a", "a", "a", "b", "b"], "seed": [0, 1, 2, 0, 1], "v": [5.0, 6.0, 9.0, 1.0, 1.5]})
    res = paired(df, "init", "a", "b", "v", pair_on=["seed"], by=[]).iloc[0]
    assert res["n"] == 2 and res["diff"] == pytest.approx(4.25)


def test_welch_matches_scipy_and_handles_one_value():
    a, b = [50.0, 52.0, 51.0], [55.0, 59.0, 56.0, 58.0]
    diff, half, p = welch(a, b)
    ref = sps.ttest_ind(b, a, equal_var=False)
    assert diff == pytest.approx(np.mean(b) - np.mean(a)) and p == pytest.approx(ref.pvalue)
    assert diff - half == pytest.approx(ref.confidence_interval(0.95).low)
    diff, half, p = welch([50.0], b)
    assert math.isnan(half) and math.isnan(p) and diff == pytest.approx(np.mean(b) - 50)
    assert "no test possible" in describe_difference("B", "A", 3.0, math.nan, 1, math.nan, "Welch t")


# --- a sweep folder written directly (no Ray), so the numbers are known ----------------------------------------

ACC = {("he_normal", 2): 0.40, ("he_normal", 5): 0.45, ("normal", 2): 0.25, ("normal", 5): 0.20}


def wobble(init: str, depth: int, seed: int) -> float:
    return 0.01 * ((seed * 7 + depth + len(init)) % 3)


def fake_sweep(storage: Path, name: str, seeds: int, shift: float = 0.0, epochs: int = 2) -> Path:
    """A finished depth_grid-shaped sweep: accuracy = ACC + shift + a seed-dependent wobble."""
    store = Store(str(storage), name)
    for (init, depth), acc in ACC.items():
        for seed in range(seeds):
            cfg = resolve({"init": init, "depth": depth, "seed": seed, "epochs": epochs, "train_subset": 500})
            tid = f"{name}_{init}_{depth}_{seed}"
            final = acc + shift + wobble(init, depth, seed)
            store.write_rows("trials", tid, [dict(cfg, trial_id=tid, sweep=name, study="depth_grid",
                                                  status="completed", error="", data_source="subset", n_train=500,
                                                  test_acc=final, train_seconds=10.0 + seed,
                                                  code_version="abc123", finished_at="2026-01-01T00:00:00")])
            for epoch in range(1, epochs + 1):
                store.write_rows("epochs", f"{tid}-e{epoch}", [dict(
                    trial_id=tid, sweep=name, epoch=epoch, test_acc=final * epoch / epochs, avg_weight=0.01 * epoch)])
                store.write_rows("layers", f"{tid}-e{epoch}", [dict(
                    trial_id=tid, epoch=epoch, layer=i, layer_name=f"conv{i + 1}", grad_abs_mean=10.0 ** -(i + epoch),
                    weight_mean=0.0, weight_std=0.1) for i in range(depth + 1)])
    return storage / name


class Refs(HTMLParser):
    """Every src/href on a page and every <img> src."""

    def __init__(self):
        super().__init__()
        self.refs, self.images = [], []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("src", "href", "srcset", "data", "poster", "action"):
                self.refs.append(value)
                if tag == "img":
                    self.images.append(value)


def check_self_contained(page: Path) -> Refs:
    text = page.read_text()
    refs = Refs()
    refs.feed(text)
    external = [r for r in refs.refs if not (r.startswith("data:") or r.startswith("#"))]
    assert not external, f"references leaving the page: {external}"
    assert not re.search(r"url\((?!data:)", text), "CSS url() pointing outside the page"
    for src in refs.images:
        png = base64.b64decode(src.split(",", 1)[1])
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return refs


class Outline(HTMLParser):
    """Each <section class="study"> of a page: its heading and its parts in page order, as 'findings',
    'figure:<name>', 'table:<name>' (a table shown open), 'folded:<name>' and 'details'."""

    VOID = {"img", "br", "hr", "meta", "input"}

    def __init__(self):
        super().__init__()
        self.sections, self.depth, self.in_heading = [], 0, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and a.get("class") == "study":
            self.sections.append({"heading": "", "parts": []})
            self.depth = 1
            return
        if not self.depth or tag in self.VOID:
            return
        if self.depth == 1:  # a direct child of the section
            parts, name = self.sections[-1]["parts"], a.get("id", "")
            if tag == "div" and a.get("class") in ("findings", "details"):
                parts.append(a["class"])
            elif tag == "figure":
                parts.append(f"figure:{name.removeprefix('figure-')}")
            elif tag == "h3" and name:
                parts.append(f"table:{name}")
            elif tag == "details":
                parts.append(f"folded:{name}")
            self.in_heading = tag == "h2"
        self.depth += 1

    def handle_endtag(self, tag):
        if self.depth and tag not in self.VOID:
            self.depth -= 1
            self.in_heading = False

    def handle_data(self, data):
        if self.in_heading:
            self.sections[-1]["heading"] += data


def outline(page: Path) -> list[dict]:
    parser = Outline()
    parser.feed(page.read_text())
    return parser.sections


def test_report_page_three_seeds(tmp_path):
    path = fake_sweep(tmp_path, "dg", seeds=3, epochs=10)  # the source's 10 epochs: its figures stand beside ours
    rep = report_mod.build_report(str(path))
    page = rep.outdir / "report.html"
    refs = check_self_contained(page)
    assert len(refs.images) == 4  # accuracy vs depth, curves, average weight, gradient flow
    text = page.read_text()
    # header: counts, compute time, data set and the departures from the source protocol
    assert "12: 12 completed" in text and "132 s summed" in text and "subset" in text
    # means, CIs, n, and the source's figure with our delta
    long = pd.read_csv(rep.outdir / "final_test_acc_long.csv")
    cell = long[(long.init == "he_normal") & (long.depth == 2)].iloc[0]
    values = [100 * (0.40 + wobble("he_normal", 2, s)) for s in range(3)]
    assert cell["n"] == 3 and cell["mean"] == pytest.approx(np.mean(values), abs=1e-3)
    assert cell["ci"] == pytest.approx(sps.t.ppf(0.975, 2) * sps.sem(values), abs=1e-3)
    assert cell["source"] == 55.83 and cell["delta"] == pytest.approx(cell["mean"] - 55.83, abs=1e-3)
    assert "[src 55.8, Δ" in text
    # the paired headline, in words, and no seed warning at n = 3
    assert "he_normal better than normal by" in text and "3 seeds, paired t" in text
    assert "fewer than 3" not in text
    assert (rep.outdir / "final_test_acc.csv").exists() and (rep.outdir / "gradient_flow.png").exists()


def test_the_page_leads_with_the_answer(tmp_path):
    """Findings first, then the main figure, the main table, and only then the details, in the HTML page and in
    index.md; long tables folded away."""
    rep = report_mod.build_report(str(fake_sweep(tmp_path, "dg", seeds=3)))
    assert outline(rep.outdir / "report.html") == [{"heading": "Study depth_grid", "parts": [
        "findings", "figure:final_test_acc_vs_depth", "table:final_test_acc", "details"]}]
    page = (rep.outdir / "report.html").read_text()
    findings = page[page.index('<div class="findings">'):page.index('<figure id="figure-final_test_acc_vs_depth"')]
    assert "Highest final test accuracy (%): init=he_normal, activation=relu, depth=5, 4" in findings
    assert "he_normal better than normal by" in findings  # the paired statements are findings too
    # the table's title is a few words; what its cells mean stands beneath it
    assert '<h3 id="final_test_acc">Final test accuracy (%)</h3><div class="about"><p>Mean ± 95% CI' in page
    # the long table of numbers is folded in the page and only linked from index.md
    assert re.search(r'<details id="final_test_acc_long"><summary>Final test accuracy \(%\), numbers', page)
    index = (rep.outdir / "index.md").read_text()
    assert "[final_test_acc_long.csv](final_test_acc_long.csv): 4 rows, not shown here" in index
    order = [index.index(x) for x in ("## Study depth_grid", "### Findings", "![", "### Final test accuracy (%)",
                                      "### Details")]
    assert order == sorted(order)


def test_inline_markdown_renders_and_leaves_products_alone():
    from analysis.html import inline, markdown_block
    assert inline("A trial *trains* when") == "A trial <em>trains</em> when"
    assert inline("**Which lrs train.** A *cell*") == "<strong>Which lrs train.</strong> A <em>cell</em>"
    assert inline("`update_ratio` = ||W|| * 2, n*k, 2 * 3") == "<code>update_ratio</code> = ||W|| * 2, n*k, 2 * 3"
    assert inline("`a*b*c` and *x*") == "<code>a*b*c</code> and <em>x</em>"  # no emphasis inside code
    assert inline("<b> & *it's*") == "&lt;b&gt; &amp; <em>it&#x27;s</em>"  # escaped first
    assert inline("he_normal's *n_train*") == "he_normal&#x27;s <em>n_train</em>"
    html_text = markdown_block("**Caveats.** Lead-in:\n- one *a*\n- two\n  continued\n\n> a caveat")
    assert html_text == ("<p><strong>Caveats.</strong> Lead-in:</p>\n<ul><li>one <em>a</em></li><li>two continued</li>"
                         '</ul>\n<div class="caveat">a caveat</div>')


def test_a_short_run_is_off_the_source_protocol(tmp_path):
    """2 epochs against the source's 10: the header says so, and no cell carries the source's figure."""
    rep = report_mod.build_report(str(fake_sweep(tmp_path, "dg2", seeds=3, epochs=2)))
    text = (rep.outdir / "report.html").read_text()
    assert "epochs = 2 here; the source used 10" in text
    assert "[src" not in text and "only beside cells on its protocol" in text
    assert pd.read_csv(rep.outdir / "final_test_acc_long.csv")["source"].isna().all()


def test_report_warns_on_one_seed(tmp_path):
    rep = report_mod.build_report(str(fake_sweep(tmp_path, "dg1", seeds=1)))
    text = (rep.outdir / "report.html").read_text()
    assert "(n=1, no CI)" in text and "1 seed: no test possible" in text
    assert "rests on as few as 1 seed(s)" in text and "Only 1 seed(s) per configuration" in text
    assert "Warning:" in rep.main_table


def test_figure_titles_round_floats(tmp_path):
    """A sampled lr in a heading reads 1.756e-05, not 1.7561113877864363e-05."""
    path = fake_sweep(tmp_path, "dglr", seeds=1)
    trials = Store(str(tmp_path), "dglr").read_table("trials")
    for trial_id in trials["trial_id"]:  # one lr for the whole sweep, as an extra varying key would show it
        row = trials[trials["trial_id"] == trial_id].iloc[0].to_dict()
        Store(str(tmp_path), "dglr").write_rows("trials", trial_id, [dict(row, lr=1.7561113877864363e-05)])
    other = dict(row, trial_id="dglr_other", lr=3e-4, depth=5, init="he_normal", seed=0)
    Store(str(tmp_path), "dglr").write_rows("trials", "dglr_other", [other])
    text = (report_mod.build_report(str(path)).outdir / "index.md").read_text()
    assert "lr=1.756e-05" in text and "1.7561113877864363e-05" not in text


def test_compare_two_sweeps(tmp_path):
    a = fake_sweep(tmp_path, "before", seeds=3)
    b = fake_sweep(tmp_path, "after", seeds=3, shift=0.05)
    extra = fake_sweep(tmp_path / "x", "after", seeds=1, shift=0.05)  # a depth-8 cell that only B has
    for table in ("trials", "epochs", "layers"):
        for f in (extra / f"{table}.parquet").glob("*he_normal_5_0*"):
            f.rename(b / f"{table}.parquet" / f.name.replace("_5_0", "_8_0"))
    trial = pd.read_parquet(b / "trials.parquet" / "after_he_normal_8_0.parquet").assign(depth=8)
    trial.to_parquet(b / "trials.parquet" / "after_he_normal_8_0.parquet")
    assert report_mod.main(["--compare", str(a), str(b)]) == 0
    out = a / "report" / "compare-after"
    check_self_contained(out / "report.html")
    res = pd.read_csv(out / "compare_long.csv")
    assert set(res.columns) >= {"init", "depth", "mean_A", "mean_B", "n_A", "n_B", "diff", "diff_ci", "p"}
    only_b = res[res.depth == 8]
    assert len(only_b) == 1 and only_b["n_A"].isna().all() and only_b["n_B"].iloc[0] == 1
    res = res[res.depth != 8]
    assert len(res) == 4 and (res["diff"].round(6) == 5.0).all()
    values_a = [100 * (0.40 + wobble("he_normal", 2, s)) for s in range(3)]
    row = res[(res.init == "he_normal") & (res.depth == 2)].iloc[0]
    assert row["p"] == pytest.approx(sps.ttest_ind(np.add(values_a, 5), values_a, equal_var=False).pvalue)
    page = (out / "report.html").read_text()
    assert "B higher than A by 5.0" in page and "only in B" in page and "as few as 0 seed(s)" in page


def test_report_header_states_the_environment_or_that_it_was_not_recorded(tmp_path):
    from trainables.environment import collect
    env = collect()
    path = fake_sweep(tmp_path, "dg", seeds=1)
    old = (report_mod.build_report(str(path)).outdir / "index.md").read_text()
    assert "- environment: environment not recorded" in old  # a sweep from before issue 21
    Store(str(tmp_path), "dg").write_json("sweep.json", dict(argv=["sweeps/depth_grid.py"], environment=env))
    rep = report_mod.build_report(str(path))
    line = next(ln for ln in (rep.outdir / "index.md").read_text().splitlines() if ln.startswith("- environment:"))
    assert f"torch {torch.__version__}" in line and f"numpy {np.__version__}" in line and env["env_id"] in line
    assert f"torch {torch.__version__}" in (rep.outdir / "report.html").read_text()


def test_compare_lists_environment_differences(tmp_path, capsys):
    from trainables.environment import collect, env_id
    env = collect()
    a, b = fake_sweep(tmp_path, "a", seeds=1), fake_sweep(tmp_path, "b", seeds=1)

    def compared(env_a, env_b) -> str:
        for name, e in (("a", env_a), ("b", env_b)):
            Store(str(tmp_path), name).write_json("sweep.json", {"environment": e} if e else {})
        capsys.readouterr()
        assert report_mod.main(["--compare", str(a), str(b)]) == 0
        line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("environment, A vs B: "))
        assert line.partition(": ")[2] in (a / "report" / "compare-b" / "report.html").read_text()
        return line.partition(": ")[2]

    assert compared(None, None) == "environment not recorded for A and B"
    assert compared(None, env) == "environment not recorded for A"
    assert compared(env, dict(env)) == "same environment"
    other = "DEFAULT" if env["cpu_capability"] != "DEFAULT" else "AVX2"  # differs on any machine
    newer = dict(env, torch="9.9.9", cpu_capability=other)
    newer["env_id"] = env_id(newer)
    assert compared(env, newer) == f"torch: {env['torch']} vs 9.9.9; cpu_capability: {env['cpu_capability']} vs " \
                                   f"{other} (A vs B)"


def test_cli_errors(tmp_path, capsys):
    assert report_mod.main([]) == 2
    assert report_mod.main([str(tmp_path / "missing")]) == 2
    assert report_mod.main(["--compare", str(tmp_path / "x"), str(tmp_path / "y")]) == 2
    a, b = fake_sweep(tmp_path, "a", seeds=1), fake_sweep(tmp_path, "b", seeds=1)
    capsys.readouterr()
    assert report_mod.main(["--compare", str(a), str(b), "--metric", "test_accc"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {a} has no column 'test_accc' in its trials table"
    empty = tmp_path / "empty"
    (empty / "trials.parquet").mkdir(parents=True)
    assert report_mod.main([str(empty)]) == 2
    assert "holds no trials yet" in capsys.readouterr().err


# --- the page in a real browser ------------------------------------------------------------------------------

CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const refs = [...document.querySelectorAll('[src],[href]')].map(e => e.getAttribute('src') || e.getAttribute('href'))
    .filter(r => !r.startsWith('data:') && !r.startsWith('#'));
  const fetched = performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'));
  const out = document.createElement('pre');
  out.id = 'browser-check';
  out.textContent = JSON.stringify({images: imgs.length, bad, refs, fetched});
  document.body.appendChild(out);
});
</script>"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("chromium is not installed (scripts/install-test-deps.sh installs Debian's package)")
    return exe


def test_report_loads_in_chromium(tmp_path):
    import json
    exe = chromium()
    rep = report_mod.build_report(str(fake_sweep(tmp_path, "dg", seeds=2)))
    page = rep.outdir / "report.html"
    probe = tmp_path / "probe.html"  # the report plus a script that writes what the browser saw into the DOM
    probe.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    run = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', run.stdout)
    assert found, f"no check result in the DOM; chromium said: {run.stderr[-2000:]}"
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result == {"images": 4, "bad": [], "refs": [], "fetched": []}
    shot = tmp_path / "shot.png"
    subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1200,1600",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes().startswith(b"\x89PNG")


# --- end to end: a real smoke sweep through Ray, then the command -----------------------------------------------

@pytest.mark.slow
def test_smoke_sweep_report_command(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sweep = subprocess.run([sys.executable, "sweeps/depth_grid.py", "--smoke", "--set", "dataset=synthetic",
                            "--storage", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=600)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    cli = subprocess.run([sys.executable, "-m", "analysis.report", str(tmp_path / "depth_grid")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert "report.html" in cli.stdout and "(n=1, no CI)" in cli.stdout
    text = (tmp_path / "depth_grid" / "report" / "report.html").read_text()
    assert "Synthetic images" in text and "4: 4 completed" in text
    check_self_contained(tmp_path / "depth_grid" / "report" / "report.html")
