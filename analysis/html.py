"""One self-contained report.html: the header, then each section in page order (findings, the main figure, the
main table, the details), tables as HTML, figures as PNG embedded as base64, long tables folded in <details>.

Nothing on the page points outside it (no stylesheet, script, font or image
URL), so it can be mailed or attached as a single file and still renders.
"""
from __future__ import annotations

import base64
import html
import re
from itertools import groupby
from pathlib import Path

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
 padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} th,td{border:1px solid #ccc;padding:.25em .6em;
 text-align:left;vertical-align:top} th{background:#f3f3f3} tr:nth-child(even) td{background:#fafafa}
.header td:first-child{font-weight:600;white-space:nowrap} .caveat{background:#fff6e0;border-left:4px solid
 #e0a000;padding:.4em .8em;margin:.4em 0} .warn{background:#fdecea;border-left:4px solid #d9534f;
 padding:.4em .8em;margin:.4em 0} figure{margin:1em 0} figure img{max-width:100%;height:auto;
 border:1px solid #eee} figcaption{font-size:.9em;color:#555} .csv{font-size:.8em;color:#666}
.scroll{overflow-x:auto} code{background:#f3f3f3;padding:0 .2em}
h3{font-size:1.05em;margin-top:1.2em} h4{font-size:.95em;margin:1.2em 0 .2em} .about{font-size:.9em;color:#444}
.about p{margin:.2em 0} .findings{background:#eef6ee;border-left:4px solid #1b7837;padding:.2em .9em;margin:.6em 0}
.findings h3{margin-top:.4em} details{margin:.6em 0} summary{cursor:pointer;font-weight:600}
"""


CODE = re.compile(r"`([^`]+)`")
STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
# A single star opens emphasis only before a non-space and closes only after one, and never inside a word,
# so products such as `2 * 3` or `n*k` stay as they are.
EMPHASIS = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")


def inline(text: str) -> str:
    """Escape, then the inline Markdown the report prose uses: **strong**, *emphasis*, `code`. Code spans are
    taken first and left as they are, so a star inside one is a star."""
    out = []
    for i, piece in enumerate(CODE.split(text)):
        if i % 2:
            out.append(f"<code>{html.escape(piece)}</code>")
        else:
            piece = STRONG.sub(r"<strong>\1</strong>", html.escape(piece))
            out.append(EMPHASIS.sub(r"<em>\1</em>", piece))
    return "".join(out)


def markdown_block(md: str) -> str:
    """Paragraphs, '> ' quotes (shown as caveats) and '- ' lists, a list allowed right under its lead-in line:
    enough for the prose of report.text() and report.findings()."""
    out = []
    for block in re.split(r"\n\s*\n", md.strip()):
        lines = block.splitlines()
        if all(line.startswith(">") for line in lines):
            out.append(f'<div class="caveat">{inline(" ".join(line.lstrip("> ") for line in lines))}</div>')
            continue
        first_item = next((i for i, line in enumerate(lines) if line.startswith("- ")), len(lines))
        if first_item:
            out.append(f"<p>{inline(' '.join(lines[:first_item]))}</p>")
        items = []
        for line in lines[first_item:]:  # a line that is not an item continues the one before it
            if line.startswith("- ") or not items:
                items.append(line[2:] if line.startswith("- ") else line)
            else:
                items[-1] += " " + line.strip()
        if items:
            out.append("<ul>" + "".join(f"<li>{inline(item)}</li>" for item in items) + "</ul>")
    return "\n".join(out)


def frame_html(df) -> str:
    """The table as HTML: numbers to 4 significant digits and missing values empty, as in the Markdown tables."""
    return '<div class="scroll">' + df.to_html(index=False, na_rep="", escape=True, border=0,
                                                   float_format="{:.4g}".format) + "</div>"


def anchor(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def part_html(report, part, level: str) -> str:
    """One text, table or figure of a section; `level`: the heading tag of its title."""
    if part.kind == "text":
        return markdown_block(part.body)
    label = html.escape(re.sub(r"[*`]", "", part.title or part.name))  # alt text is plain: no Markdown marks
    about = f'<div class="about">{markdown_block(part.about)}</div>' if part.about else ""
    if part.kind == "figure":
        data = base64.b64encode(Path(report.outdir, f"{part.name}.png").read_bytes()).decode()
        return (f'<figure id="figure-{anchor(part.name)}"><{level}>{inline(part.title or part.name)}</{level}>{about}'
                f'<img alt="{label}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(part.name)}.png</figcaption></figure>")
    warnings = "".join(f'<div class="warn">{inline(w)}</div>' for w in report.notes.get(part.name, []))
    table = frame_html(report.frames[part.name])
    csv = f'<div class="csv">CSV beside this page: {html.escape(part.name)}.csv</div>'
    if part.folded:  # a long table: open on demand, so it does not push the rest of the page down
        return (f'<details id="{anchor(part.name)}"><summary>{inline(part.title or part.name)} '
                f"({part.rows} rows)</summary>{about}{warnings}{table}{csv}</details>")
    return f'<{level} id="{anchor(part.name)}">{inline(part.title or part.name)}</{level}>{about}{warnings}{table}{csv}'


def section_html(report, heading: str, parts: list) -> str:
    """A section in page order: findings, the main figure, the main table, then the details."""
    body = [f"<h2>{inline(heading)}</h2>"] if heading else []
    for place, group in groupby(parts, key=lambda p: p.place):
        inner = [part_html(report, p, "h4" if place == "details" else "h3") for p in group]
        if place in ("findings", "details"):
            inner = [f'<div class="{place}"><h3>{place.capitalize()}</h3>', *inner, "</div>"]
        body += inner
    return '<section class="study">\n' + "\n".join(body) + "\n</section>"


def render(report) -> str:
    """The page for a Report (analysis.document.Report); figures are read back from its PNG files."""
    body = [f"<h1>{html.escape(report.title)}</h1>"]
    if report.header:
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{inline(str(v))}</td></tr>" for k, v in report.header.items())
        body.append(f'<table class="header">{rows}</table>')
    body += [f'<div class="caveat">{inline(c)}</div>' for c in report.caveats]
    body += [section_html(report, heading, parts) for heading, parts in report.page()]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(report.title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
