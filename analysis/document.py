"""The report document every study writes into, and the facts every report states first.

`Report` collects a study's text, tables and figures and writes them under
its `outdir`: each table as CSV and Markdown, each figure as PNG, an
index.md linking them, and one self-contained report.html (rendered by
analysis/html.py). `sweep_header` and `data_caveats` derive the page's header
(what ran, when, on which data, what it cost) and where the data depart from
the source's protocol; `reference` reads the source's reported figures from
reference.json.

This is library code: the study modules (depth_grid, vgg, init_variance,
dropout_lsuv, imbalance), analysis/tables.py and analysis/compare.py import it;
it imports none of them, nor the command line in analysis/report.py.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.environment import describe as describe_environment  # noqa: E402
from analysis.environment import trial_environments  # noqa: E402
from analysis.html import render as render_html  # noqa: E402
from analysis.results import open_store  # noqa: E402
from analysis.stats import MIN_SEEDS, seed_warning  # noqa: E402
from sweeps.results.progress import fmt  # noqa: E402

REFERENCE_FILE = Path(__file__).with_name("reference.json")
FLOAT_FORMAT = ".4g"  # numbers in Markdown tables: 4 significant digits
MAX_LISTED = 6  # a caveat lists at most this many values of a key (more: a sampled key, given as its range)


class ReportError(Exception):
    """A report cannot be built from what the user pointed at; the command prints it and exits 2."""


def reference(study: str) -> dict:
    """The source document's reported figures for `study` (see reference.json)."""
    return json.loads(REFERENCE_FILE.read_text()).get(study, {})


def markdown_table(df: pd.DataFrame, floatfmt: str = FLOAT_FORMAT) -> str:
    """`df` as a pipe Markdown table (pandas' to_markdown, i.e. tabulate): no index, floats with `floatfmt`,
    missing values as empty cells, text columns printed as they are (never re-read as numbers)."""
    df = df.infer_objects()
    text_columns = [i for i, c in enumerate(df.columns) if not pd.api.types.is_numeric_dtype(df.iloc[:, i])]
    cells = df.astype(object).where(df.notna(), None)  # tabulate writes `missingval` for None, "nan" for NaN
    # (tabulate cannot take a per-column list for a table without rows; there is nothing to parse then)
    # No alignment: cells are not padded to the column width, so a row reads `| he_normal | relu |`
    # wherever it is grepped or diffed, as the hand-written table printed it.
    return cells.to_markdown(index=False, floatfmt=floatfmt, missingval="", stralign=None, numalign=None,
                             disable_numparse=text_columns if len(df) else True)


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
    source: str = ""  # the sweep: a local folder or a URI (the report may be written elsewhere, --out)

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
                if len(used) > MAX_LISTED and all(isinstance(u, (int, float)) for u in used):  # a sampled key
                    here = f"{len(used)} values from {used[0]:.3g} to {used[-1]:.3g}"
                else:
                    here = ", ".join(map(fmt, used))
                notes.append(f"{key} = {here} here; the source used {wanted}.")
    seeds = trials.groupby([c for c in ("study",) if c in trials]).seed.nunique().min() if "seed" in trials else 1
    if seeds < MIN_SEEDS:
        notes.append(f"Only {seeds} seed(s) per configuration: spreads are not meaningful below {MIN_SEEDS}.")
    return notes


def sweep_record(path: str) -> dict:
    """The sweep's sweep.json, or {} for an older or hand-made sweep folder (callers fall back on the trials)."""
    try:
        info = open_store(path).read_json("sweep.json")
    except Exception:
        return {}
    return info if isinstance(info, dict) else {}


def sweep_header(path: str, trials: pd.DataFrame, info: dict | None = None) -> dict:
    """The facts a reader needs first: what ran, when, on which code, environment and data, how it ended, what it
    cost. `info`: the sweep.json when the caller has read it already."""
    info = sweep_record(path) if info is None else info
    finished = trials["finished_at"].dropna().astype(str) if "finished_at" in trials else pd.Series([], dtype=str)
    when = info.get("started_at") or (finished.min() if len(finished) else "unknown")
    if len(finished):
        when += f" to {finished.max()}"
    data = info.get("data") or {}
    sources = sorted(trials["data_source"].dropna().unique()) if "data_source" in trials else []
    dataset = ", ".join(data.values()) if data else ", ".join(sorted(trials.get("dataset", pd.Series()).unique()))
    counts = trials["status"].value_counts()
    seconds = float(trials["train_seconds"].fillna(0).sum()) if "train_seconds" in trials else 0.0
    header = {
        "sweep": f"{trials['sweep'].iloc[0]} (study {trials['study'].iloc[0]})",
        "date": f"{when} (report written {time.strftime('%Y-%m-%d %H:%M')})",
        "code version": ", ".join(sorted(trials["code_version"].dropna().astype(str).unique())),
        "environment": describe_environment(info.get("environment")),
        "trial environments": trial_environments(info, trials),
        "data set": f"{'/'.join(sources) or 'unknown'}: {dataset}",
        "trials": f"{len(trials)}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
        "compute time": f"{seconds / 3600:.2f} h ({seconds:,.0f} s summed over trials' train_seconds)",
        "command": " ".join(info.get("argv", [])) or "unknown",
    }
    return {k: v for k, v in header.items() if v is not None}  # trial environments: only where they differ
