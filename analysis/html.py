"""One self-contained report.html: header, tables (HTML), then figures (PNG embedded as base64).

Nothing on the page points outside it (no stylesheet, script, font or image
URL), so it can be mailed or attached as a single file and still renders.
"""
from __future__ import annotations

import base64
import html
import re
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
"""


def inline(text: str) -> str:
    """Escape, then the few inline marks the study modules use: **bold**, `code`."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def markdown_block(md: str) -> str:
    """Paragraphs, '> ' quotes (shown as caveats) and '- ' lists: enough for report.text()."""
    out = []
    for block in re.split(r"\n\s*\n", md.strip()):
        lines = block.splitlines()
        if all(line.startswith(">") for line in lines):
            out.append(f'<div class="caveat">{inline(" ".join(line.lstrip("> ") for line in lines))}</div>')
        elif all(line.startswith("- ") for line in lines):
            out.append("<ul>" + "".join(f"<li>{inline(line[2:])}</li>" for line in lines) + "</ul>")
        else:
            out.append(f"<p>{inline(' '.join(lines))}</p>")
    return "\n".join(out)


def frame_html(df) -> str:
    """The table as HTML: numbers to 4 significant digits and missing values empty, as in the Markdown tables."""
    return '<div class="scroll">' + df.to_html(index=False, na_rep="", escape=True, border=0,
                                                   float_format="{:.4g}".format) + "</div>"


def anchor(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def render(report) -> str:
    """The page for a Report (analysis.document.Report); figures are read back from its PNG files."""
    body = [f"<h1>{html.escape(report.title)}</h1>"]
    if report.header:
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{inline(str(v))}</td></tr>" for k, v in report.header.items())
        body.append(f'<table class="header">{rows}</table>')
    body += [f'<div class="caveat">{inline(c)}</div>' for c in report.caveats]
    figures = []
    for section in report.sections:
        kind = section[0]
        if kind == "text":
            body.append(markdown_block(section[1]))
        elif kind == "table":
            _, name, caption, _md = section
            body.append(f'<h2 id="{anchor(name)}">{html.escape(caption or name)}</h2>')
            body += [f'<div class="warn">{inline(w)}</div>' for w in report.notes.get(name, [])]
            body.append(frame_html(report.frames[name]))
            body.append(f'<div class="csv">CSV beside this page: {html.escape(name)}.csv</div>')
        else:
            figures.append(section)
    if figures:
        body.append("<h2>Figures</h2>")
    for _, name, caption in figures:
        data = base64.b64encode(Path(report.outdir, f"{name}.png").read_bytes()).decode()
        label = html.escape(caption or name)
        body.append(f'<figure id="{anchor(name)}"><img alt="{label}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{label} ({html.escape(name)}.png)</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(report.title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
