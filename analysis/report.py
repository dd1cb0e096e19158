"""`python -m analysis.report <storage>/<name>`: tables and figures for one finished sweep.

Each study registers a module in STUDIES with `build(report, tables)`; it adds
tables and figures through the Report object, which writes them as CSV,
Markdown and PNG under `<storage>/<name>/report/` and an index.md linking them.
The study is read from the trials table, so the command needs only the path.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.results import load  # noqa: E402

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

    def text(self, markdown: str) -> None:
        self.sections.append(("text", markdown))

    def table(self, name: str, df: pd.DataFrame, caption: str = "", main: bool = False) -> None:
        df.to_csv(self.outdir / f"{name}.csv", index=False)
        md = markdown_table(df)
        (self.outdir / f"{name}.md").write_text(md + "\n")
        self.sections.append(("table", name, caption, md))
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
                parts.append(f"## {caption or name}\n\n{md}\n\n[{name}.csv]({name}.csv)\n")
            else:
                _, name, caption = section
                parts.append(f"## {caption or name}\n\n![{caption or name}]({name}.png)\n")
        index = self.outdir / "index.md"
        index.write_text("\n".join(parts))
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
    for key, wanted in protocol.items():
        if key in trials:
            used = sorted(trials[key].dropna().unique().tolist())
            if used != [wanted]:
                notes.append(f"{key} = {', '.join(map(str, used))} here; the source used {wanted}.")
    seeds = trials.groupby([c for c in ("study",) if c in trials]).seed.nunique().min() if "seed" in trials else 1
    if seeds < 3:
        notes.append(f"Only {seeds} seed(s) per configuration: spreads are not meaningful below 3.")
    return notes


def build_report(path: str) -> Report:
    tables = load(path)
    trials = tables["trials"]
    if not len(trials):
        raise SystemExit(f"error: {path} holds no trials yet")
    studies = trials["study"].unique().tolist()
    if len(studies) != 1 or studies[0] not in STUDIES:
        raise SystemExit(f"error: no report for study {studies} (known: {', '.join(STUDIES)})")
    local = Path(str(path))
    if "://" in str(path):
        raise SystemExit("error: reports are written next to the results; copy a remote sweep locally first")
    outdir = local / "report"
    outdir.mkdir(parents=True, exist_ok=True)
    report = Report(outdir, tables, title=f"Sweep {trials['sweep'].iloc[0]} ({studies[0]})")
    counts = trials["status"].value_counts().to_dict()
    report.text("Trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                + f". Code version: {', '.join(trials['code_version'].unique())}.")
    importlib.import_module(STUDIES[studies[0]]).build(report, tables)
    report.write()
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="<storage>/<name> of a sweep")
    args = parser.parse_args(argv)
    if not Path(args.path).exists() and "://" not in args.path:
        print(f"error: no sweep results at {args.path}", file=sys.stderr)
        return 2
    report = build_report(args.path)
    print(report.main_table)
    print(f"\nreport: {report.outdir / 'index.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
