"""HTML parts shared by ctsurv's reports (run, study and patient pages): the inline CSS, escaping,
cell formatting, tables and the page frame. Every string that reaches the page is escaped here;
nothing is linked or loaded from elsewhere."""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

__all__ = ["CSS", "esc", "is_missing", "fmt_cell", "html_table", "html_dl", "absent_note", "html_page"]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.8em;overflow-x:auto;font-size:.85em}
.headline{font-size:1.15em}.big{font-size:1.6em;font-weight:bold}
.warn{color:#8a1c00;font-weight:bold}.absent{color:#666;font-style:italic}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}code{font-size:.9em}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v)) or (
        isinstance(v, np.floating) and not np.isfinite(v))


def fmt_cell(v, digits: int = 3, p: bool = False) -> str:
    """A cell's text (not yet escaped): 3 decimals, p-values in 3 significant digits, — for none."""
    if is_missing(v):
        return "\u2014"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.3g}" if p else f"{float(v):.{digits}f}"
    return str(v)


_P_COLUMNS = {"p_value", "p_vs_reference"}

#: columns shown as plain numbers (``12``, not ``12.000``)
_G_COLUMNS = {"horizon"}


def html_table(df: pd.DataFrame, *, id_: str | None = None, row_attr: str | None = None) -> str:
    """An escaped HTML table; ``row_attr`` names a column whose value goes into ``data-<col>``."""
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    body = []
    for rec in df.to_dict(orient="records"):
        attr = f' data-{esc(row_attr)}="{esc(rec[row_attr])}"' if row_attr else ""
        cells = []
        for c in df.columns:
            v = rec[c]
            cls = ' class="num"' if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
                v, (bool, np.bool_)) else ""
            text = f"{float(v):g}" if c in _G_COLUMNS and not is_missing(v) else fmt_cell(v, p=c in _P_COLUMNS)
            cells.append(f"<td{cls}>{esc(text)}</td>")
        body.append(f"<tr{attr}>{''.join(cells)}</tr>")
    ident = f' id="{esc(id_)}"' if id_ else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_dl(pairs) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs)
    return f"<table>{rows}</table>"


def absent_note(text: str) -> str:
    return f'<p class="absent">{esc(text)}</p>'




def html_page(title: str, sections: list[str]) -> str:
    """One HTML document: the title as heading, then the sections; CSS inline, nothing linked."""
    body = "\n".join([f"<h1>{esc(title)}</h1>", *sections])
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")
