"""`python -m analysis.report <storage>/<name>`: tables and figures for one finished sweep.

The command line only. STUDIES maps each study (read from the trials table,
so the command needs only the path) to its module's `build(report, tables)`,
which adds findings, tables and figures through a Report; the page puts each
section's findings first, then its main figure, its main table and the details.
Where things live:

- analysis/document.py: Report (writes CSV, Markdown and PNG under
  `<storage>/<name>/report/`, an index.md linking them, and one
  self-contained report.html), ReportError, the sweep header, the data
  caveats and the source's figures (reference.json);
- analysis/tables.py: the statistics tables every study shares;
- analysis/search.py: the "Search" section added after any study's own,
  when the sweep sampled keys or stopped trials early (sweep.json "search");
- analysis/tuned.py: the "Tuned comparison" section of a sweep that tuned each
  cell and confirmed the winners on fresh seeds (sweep.json "confirmation").
  Such a sweep's study tables are built from the confirm rows only and its
  Search section from the search rows only: a cell's mean is never pulled by
  the search's early-stopped or badly tuned trials;
- analysis/depth_grid.py, vgg.py, init_variance.py, dropout_lsuv.py,
  imbalance.py, lr_window/ (a package: compute, figures, text): one per study.

`python -m analysis.report --compare A B` puts two sweeps side by side
(see analysis/compare.py).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from analysis.compare import compare
from analysis.document import Report, ReportError, data_caveats, reference, sweep_header, sweep_record
from analysis.results import CONFIRM, SEARCH, by_phase, load
from analysis.search import build_search_section, search_settings, wanted
from analysis.tuned import build_tuned_section, confirmation

__all__ = ["STUDIES", "Report", "ReportError", "build_report", "main"]  # Report, ReportError: re-exported

# study -> the analysis module whose build(report, tables) makes its page. Imported when a sweep of that
# study is reported, so the command starts without what one study alone needs (torch for the VGG models
# and the kernel pictures).
STUDIES = {
    "depth_grid": "depth_grid",
    "vgg_depth": "vgg",            # study 002, one module for its three sweeps
    "vgg_regularization": "vgg",
    "vgg_deeper": "vgg",
    "init_variance": "init_variance",
    "dropout_lsuv": "dropout_lsuv",
    "imbalance": "imbalance",
    "lr_window": "lr_window",      # issue 14: which learning rates train, per depth, init, BN, optimizer
    "depth_grid_tuned": "depth_grid",  # issue 23: study 000 with each cell tuned; its confirm rows, same arms
}
# study -> its entry in reference.json, where the two differ: a tuned study checks the source's figures
REFERENCE = {"depth_grid_tuned": "depth_grid"}


REMOTE_DEFAULT = Path("reports")  # a remote sweep's report goes to ./reports/<name>/ unless --out says where


def build_report(path: str, out: str | None = None) -> Report:
    """The report of the sweep at `path` (a folder or a URI such as s3://bucket/results/name), written to
    `out`, by default <sweep>/report/ for a local sweep and ./reports/<name>/ for a remote one."""
    tables = load(path)
    trials = tables["trials"]
    if not len(trials):
        raise ReportError(f"{path} holds no trials yet")
    studies = trials["study"].unique().tolist()
    search = search_settings(path, trials)
    # A study without its own module still gets the generic search section when it searched.
    if len(studies) != 1 or (studies[0] not in STUDIES and not wanted(search)):
        raise ReportError(f"no report for study {studies} (known: {', '.join(STUDIES)})")
    remote = "://" in str(path)
    default = REMOTE_DEFAULT / str(path).rstrip("/").rpartition("/")[2] if remote else Path(str(path)) / "report"
    outdir = Path(out) if out else default
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"--out {outdir}: cannot create it ({exc.strerror or exc})") from None
    record = sweep_record(path)
    # A confirmed sweep answers on its confirm rows; the search rows are the Search section's. Any other
    # sweep (no phase column: every row is "search") reports on all its rows, as before.
    confirmed = confirmation(record) is not None
    study_tables = by_phase(tables, CONFIRM) if confirmed else tables
    report = Report(outdir, study_tables, title=f"Sweep {trials['sweep'].iloc[0]} ({studies[0]})", source=str(path))
    report.header = sweep_header(path, trials, record)
    protocol = reference(REFERENCE.get(studies[0], studies[0])).get("protocol", {})
    report.caveats = data_caveats(study_tables["trials"] if len(study_tables["trials"]) else trials,
                                  {k: v for k, v in protocol.items() if k != "data_source"})
    report.section(f"Study {studies[0]}")
    if confirmed and not len(study_tables["trials"]):
        report.findings("The search has picked each cell's winner; no confirm run has written a row yet, so the "
                        "study's tables wait for them (the Tuned comparison section shows the selection).")
    elif studies[0] in STUDIES:
        importlib.import_module(f"analysis.{STUDIES[studies[0]]}").build(report, study_tables)
    else:
        report.findings(f"Study `{studies[0]}` has no report module of its own (analysis/report.py: STUDIES); "
                        "what follows is the generic search section every sampled or early-stopped sweep gets.")
    build_tuned_section(report, tables, record)  # no-op without a confirmation record
    build_search_section(report, by_phase(tables, SEARCH), search)  # no-op for a plain grid
    report.write()
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", help="<storage>/<name> of a sweep")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="two sweeps side by side, cell by cell (page under A/report/compare-<B>/)")
    parser.add_argument("--metric", default="test_acc", help="--compare: trials column to compare (default test_acc)")
    parser.add_argument("--out", help="where the report goes (default: <sweep>/report/ for a local sweep, "
                                      "./reports/<name>/ for a remote one such as s3://...); with --compare, "
                                      "the comparison page's folder instead of A/report/compare-<B>/")
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
            report = compare(*args.compare, metric=args.metric, out=args.out)
        else:
            report = build_report(args.path, args.out)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.main_table)
    if args.compare:  # a changed library or CPU can explain a difference as well as the code can
        print(f"\nenvironment, A vs B: {report.header['environment, A vs B']}")
    print(f"\nreport: {report.outdir / 'report.html'} (and index.md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
