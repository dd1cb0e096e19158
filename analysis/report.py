"""`python -m analysis.report <storage>/<name>`: tables and figures for one finished sweep.

Each study registers a module in STUDIES with `build(report, tables)`; it adds
tables and figures through the Report object, which writes them as CSV,
Markdown and PNG under `<storage>/<name>/report/`, an index.md linking them,
and one self-contained report.html (header, tables, embedded figures).
The study is read from the trials table, so the command needs only the path.

`python -m analysis.report --compare A B` puts two sweeps side by side
(see analysis/compare.py).
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.html import render as render_html  # noqa: E402
from analysis.results import load, open_store  # noqa: E402
from analysis.stats import MIN_SEEDS, seed_warning  # noqa: E402


class ReportError(Exception):
    """A report cannot be built from what the user pointed at; main() prints it and exits 2."""

STUDIES = {
    "depth_grid": "analysis.depth_grid",
    "vgg_depth": "analysis.vgg",            # study 002, one module for its three sweeps
    "vgg_regularization": "analysis.vgg",
    "vgg_deeper": "analysis.vgg",
    "init_variance": "analysis.init_variance",
    "dropout_lsuv": "analysis.dropout_lsuv",
    "imbalance": "analysis.imbalance",
}
REFERENCE_FILE = Path(__file__).with_name("reference.json")


def reference(study: str) -> dict:
    """The source document's reported figures for `study` (see reference.json)."""
    return json.loads(REFERENCE_FILE.read_text()).get(study, {})


def markdown_table(df: pd.DataFrame, floatfmt: str = "{:.4g}") -> str:
    def fmt(v):
        if isinstance(v, float):
            return "" if pd.isna(v) else floatfmt.format(v)
        return str(v)
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


@dataclass
class Report:
    outdir: Path
    tables: dict
    title: str
    sections: list = field(default_factory=list)
    main_table: str = ""
    header: dict = field(default_factory=dict)   # label -> value, the page's header table
    caveats: list = field(default_factory=list)  # where the data depart from the source protocol
    frames: dict = field(default_factory=dict)   # table name -> DataFrame, for the HTML page
    notes: dict = field(default_factory=dict)    # table name -> warnings shown with the table

    def text(self, markdown: str) -> None:
        if markdown.startswith("> ") and markdown[2:] in self.caveats:
            return  # already in the header (build_report derives the caveats for every study)
        self.sections.append(("text", markdown))

    def table(self, name: str, df: pd.DataFrame, caption: str = "", main: bool = False,
              min_n: int | None = None) -> None:
        """`min_n`: fewest seeds behind any cell (default: the smallest value of an `n` column, if any);
        below 3 the table carries a warning."""
        df.to_csv(self.outdir / f"{name}.csv", index=False)
        md = markdown_table(df)
        (self.outdir / f"{name}.md").write_text(md + "\n")
        self.sections.append(("table", name, caption, md))
        self.frames[name] = df
        if min_n is None and "n" in df.columns and len(df):
            min_n = int(df["n"].min())
        warning = seed_warning([min_n] if min_n is not None else [])
        if warning:
            self.notes.setdefault(name, []).append(warning)
            md = f"{md}\n\n**Warning:** {warning}"
        if main:
            self.main_table = f"{caption}\n\n{md}" if caption else md

    def figure(self, name: str, fig, caption: str = "") -> None:
        fig.savefig(self.outdir / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.sections.append(("figure", name, caption))

    def write(self) -> Path:
        parts = [f"# {self.title}\n"]
        for section in self.sections:
            if section[0] == "text":
                parts.append(section[1] + "\n")
            elif section[0] == "table":
                _, name, caption, md = section
                warn = "".join(f"\n**Warning:** {w}\n" for w in self.notes.get(name, []))
                parts.append(f"## {caption or name}\n{warn}\n{md}\n\n[{name}.csv]({name}.csv)\n")
            else:
                _, name, caption = section
                parts.append(f"## {caption or name}\n\n![{caption or name}]({name}.png)\n")
        header = [f"- {k}: {v}" for k, v in self.header.items()] + [f"> {c}" for c in self.caveats]
        index = self.outdir / "index.md"
        index.write_text("\n".join([parts[0], *header, "", *parts[1:]]))
        (self.outdir / "report.html").write_text(render_html(self))
        return index


def data_caveats(trials: pd.DataFrame, protocol: dict) -> list[str]:
    """Sentences saying where this sweep departs from the source protocol, derived from the trials."""
    notes = []
    sources = sorted(trials["data_source"].dropna().unique()) if "data_source" in trials else []
    if "synthetic" in sources:
        notes.append("Synthetic images (random noise with a class pattern): numbers say nothing about CIFAR.")
    if "subset" in sources:
        n = int(trials["n_train"].max())
        notes.append(f"Trained on a subset of {n:,} training images, not the full set: "
                     "accuracies are not comparable with the source's.")
    elif "train_subset" in trials and trials["train_subset"].fillna(0).max() > 0:
        n = int(trials["n_train"].max()) if "n_train" in trials else int(trials["train_subset"].max())
        notes.append(f"Only the first {n:,} training images were used (train_subset), not the full set.")
    for key, wanted in protocol.items():
        if key in trials:
            used = sorted(trials[key].dropna().unique().tolist())
            if used != [wanted]:
                notes.append(f"{key} = {', '.join(map(str, used))} here; the source used {wanted}.")
    seeds = trials.groupby([c for c in ("study",) if c in trials]).seed.nunique().min() if "seed" in trials else 1
    if seeds < MIN_SEEDS:
        notes.append(f"Only {seeds} seed(s) per configuration: spreads are not meaningful below {MIN_SEEDS}.")
    return notes


def sweep_header(path: str, trials: pd.DataFrame) -> dict:
    """The facts a reader needs first: what ran, when, on which code and data, how it ended, what it cost."""
    try:
        info = open_store(path).read_json("sweep.json")
    except Exception:  # an older or hand-made sweep folder: fall back on the trials table
        info = {}
    finished = trials["finished_at"].dropna().astype(str) if "finished_at" in trials else pd.Series([], dtype=str)
    when = info.get("started_at") or (finished.min() if len(finished) else "unknown")
    if len(finished):
        when += f" to {finished.max()}"
    data = info.get("data") or {}
    sources = sorted(trials["data_source"].dropna().unique()) if "data_source" in trials else []
    dataset = ", ".join(data.values()) if data else ", ".join(sorted(trials.get("dataset", pd.Series()).unique()))
    counts = trials["status"].value_counts()
    seconds = float(trials["train_seconds"].fillna(0).sum()) if "train_seconds" in trials else 0.0
    return {
        "sweep": f"{trials['sweep'].iloc[0]} (study {trials['study'].iloc[0]})",
        "date": f"{when} (report written {time.strftime('%Y-%m-%d %H:%M')})",
        "code version": ", ".join(sorted(trials["code_version"].dropna().astype(str).unique())),
        "data set": f"{'/'.join(sources) or 'unknown'}: {dataset}",
        "trials": f"{len(trials)}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
        "compute time": f"{seconds / 3600:.2f} h ({seconds:,.0f} s summed over trials' train_seconds)",
        "command": " ".join(info.get("argv", [])) or "unknown",
    }


def build_report(path: str) -> Report:
    tables = load(path)
    trials = tables["trials"]
    if not len(trials):
        raise ReportError(f"{path} holds no trials yet")
    studies = trials["study"].unique().tolist()
    if len(studies) != 1 or studies[0] not in STUDIES:
        raise ReportError(f"no report for study {studies} (known: {', '.join(STUDIES)})")
    local = Path(str(path))
    if "://" in str(path):
        raise ReportError("reports are written next to the results; copy a remote sweep locally first")
    outdir = local / "report"
    outdir.mkdir(parents=True, exist_ok=True)
    report = Report(outdir, tables, title=f"Sweep {trials['sweep'].iloc[0]} ({studies[0]})")
    report.header = sweep_header(path, trials)
    protocol = reference(studies[0]).get("protocol", {})
    report.caveats = data_caveats(trials, {k: v for k, v in protocol.items() if k != "data_source"})
    importlib.import_module(STUDIES[studies[0]]).build(report, tables)
    report.write()
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", help="<storage>/<name> of a sweep")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="two sweeps side by side, cell by cell (page under A/report/compare-<B>/)")
    parser.add_argument("--metric", default="test_acc", help="--compare: trials column to compare (default test_acc)")
    parser.add_argument("--out", help="--compare: folder for the comparison page instead of A/report/compare-<B>/")
    args = parser.parse_args(argv)
    paths = args.compare or ([args.path] if args.path else [])
    if not paths or (args.compare and args.path):
        parser.print_usage(sys.stderr)
        print("error: give one sweep path, or --compare A B", file=sys.stderr)
        return 2
    for path in paths:
        if not Path(path).exists() and "://" not in path:
            print(f"error: no sweep results at {path}", file=sys.stderr)
            return 2
    try:
        if args.compare:
            from analysis.compare import compare
            report = compare(*args.compare, metric=args.metric, out=args.out)
        else:
            report = build_report(args.path)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.main_table)
    print(f"\nreport: {report.outdir / 'report.html'} (and index.md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
