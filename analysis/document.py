"""The report document every study writes into, and the facts every report states first.

`Report` collects a study's findings, text, tables and figures and writes them
under its `outdir`: each table as CSV and Markdown, each figure as PNG, an
index.md linking them, and one self-contained report.html (rendered by
analysis/html.py). Both pages lead with the answer: each section (the study's,
then "Search") shows its findings, its main figure and its main table first,
then the details, long tables folded away. `sweep_header` and `data_caveats`
derive the page's header (what ran, when, on which data, what it cost) and
where the data depart from the source's protocol; `reference` reads the
source's reported figures from reference.json.

This is library code: the study modules (depth_grid, vgg, init_variance,
dropout_lsuv, imbalance, lr_window), analysis/tables.py and analysis/compare.py
import it; it imports none of them, nor the command line in analysis/report.py.
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


# Where each part of a study's section stands on the page: the answer first (findings, the main figure, the
# main table), then whatever explains or backs it, in the order the study added it.
PAGE_ORDER = ("findings", "main figure", "main table", "details")
LONG_TABLE = 20  # a details table with more rows than this is folded away (HTML) or linked as CSV (index.md)


@dataclass
class Part:
    kind: str            # "text", "table" or "figure"
    place: str           # one of PAGE_ORDER
    section: str         # the heading of the section it belongs to ("" before any section was opened)
    body: str = ""       # text: its Markdown; table: the Markdown table
    name: str = ""       # table or figure: the file stem (<name>.csv / .md / .png)
    title: str = ""      # table or figure: a short heading
    about: str = ""      # table or figure: the definitions shown beneath the heading (Markdown)
    folded: bool = False  # table: a long table, shown collapsed (HTML) or as a CSV link (index.md)
    rows: int = 0        # table: its number of rows


@dataclass
class Report:
    outdir: Path
    tables: dict
    title: str
    parts: list = field(default_factory=list)    # Part, in the order added; page() puts them in page order
    main_table: str = ""
    header: dict = field(default_factory=dict)   # label -> value, the page's header table
    caveats: list = field(default_factory=list)  # where the data depart from the source protocol
    frames: dict = field(default_factory=dict)   # table name -> DataFrame, for the HTML page
    notes: dict = field(default_factory=dict)    # table name -> warnings shown with the table
    source: str = ""  # the sweep: a local folder or a URI (the report may be written elsewhere, --out)
    current: str = ""  # the section parts are added to

    def section(self, heading: str) -> None:
        """Start a section (a study's own, then "Search"): page() orders the parts within each one."""
        self.current = heading

    def findings(self, markdown: str) -> None:
        """The computed statements that answer the study's question: first in the section."""
        self.parts.append(Part("text", "findings", self.current, markdown))

    def text(self, markdown: str) -> None:
        """Prose that explains or qualifies the findings (definitions, caveats): with the details."""
        if markdown.startswith("> ") and markdown[2:] in self.caveats:
            return  # already in the header (build_report derives the caveats for every study)
        self.parts.append(Part("text", "details", self.current, markdown))

    def table(self, name: str, df: pd.DataFrame, title: str = "", about: str = "", *, main: bool = False,
              fold: bool | None = None, min_n: int | None = None) -> None:
        """`title`: a few words; `about`: the definitions beneath it. `main`: the table that answers the section
        (the first one is what the command prints). `fold`: show it collapsed (default: a details table longer
        than LONG_TABLE rows). `min_n`: fewest seeds behind any cell (default: the smallest value of an `n`
        column, if any); below 3 the table carries a warning."""
        df.to_csv(self.outdir / f"{name}.csv", index=False)
        md = markdown_table(df)
        (self.outdir / f"{name}.md").write_text(md + "\n")
        folded = (not main and len(df) > LONG_TABLE) if fold is None else fold
        self.parts.append(Part("table", "main table" if main else "details", self.current, md, name, title, about,
                               folded, len(df)))
        self.frames[name] = df
        if min_n is None and "n" in df.columns and len(df):
            min_n = int(df["n"].min())
        warning = seed_warning([min_n] if min_n is not None else [])
        if warning:
            self.notes.setdefault(name, []).append(warning)
            md = f"{md}\n\n**Warning:** {warning}"
        if main and not self.main_table:  # the command prints the study's answer, not a later section's
            heading = "\n".join(x for x in (title, about) if x)
            self.main_table = f"{heading}\n\n{md}" if heading else md

    def figure(self, name: str, fig, title: str = "", about: str = "", *, main: bool = False) -> None:
        """`main`: the figure that shows the answer, placed right after the findings."""
        fig.savefig(self.outdir / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.parts.append(Part("figure", "main figure" if main else "details", self.current, name=name,
                               title=title, about=about))

    def page(self) -> list[tuple[str, list[Part]]]:
        """(section heading, its parts in PAGE_ORDER, details in the order added) per section, in the order
        the sections were opened."""
        headings = dict.fromkeys(p.section for p in self.parts)
        return [(h, sorted((p for p in self.parts if p.section == h), key=lambda p: PAGE_ORDER.index(p.place)))
                for h in headings]

    def write(self) -> Path:
        header = [f"- {k}: {v}" for k, v in self.header.items()] + [f"> {c}" for c in self.caveats]
        lines = [f"# {self.title}\n", *header, ""]
        for heading, parts in self.page():
            if heading:
                lines.append(f"## {heading}\n")
            opened = set()
            for part in parts:
                if part.place in ("findings", "details") and part.place not in opened:
                    lines.append(f"### {part.place.capitalize()}\n")
                    opened.add(part.place)
                lines.append(self.markdown_part(part, "####" if part.place == "details" else "###"))
        index = self.outdir / "index.md"
        index.write_text("\n".join(lines))
        (self.outdir / "report.html").write_text(render_html(self))
        return index

    def markdown_part(self, part: Part, level: str) -> str:
        if part.kind == "text":
            return part.body + "\n"
        about = f"{part.about}\n\n" if part.about else ""
        heading = f"{level} {part.title or part.name}\n\n{about}"
        if part.kind == "figure":
            return f"{heading}![{part.title or part.name}]({part.name}.png)\n"
        warn = "".join(f"**Warning:** {w}\n\n" for w in self.notes.get(part.name, []))
        if part.folded:
            return f"{heading}{warn}[{part.name}.csv]({part.name}.csv): {part.rows} rows, not shown here\n"
        return f"{heading}{warn}{part.body}\n\n[{part.name}.csv]({part.name}.csv)\n"


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
