"""The HTML report's small pieces: escaping, a table, what counts as a point (``html_report``, ``html_compare``)."""

from __future__ import annotations

import html as H


def e(x) -> str:
    return H.escape(str(x), quote=True)


def table(header, rows, cls="", attrs=None) -> str:
    """An HTML table; a cell is text (escaped) or ``(html, {attr: value})``; ``attrs``: one dict per row."""
    def cell(c, tag="td"):
        if isinstance(c, tuple):
            extra = "".join(f' {k}="{e(v)}"' for k, v in c[1].items())
            return f"<{tag}{extra}>{c[0]}</{tag}>"
        return f"<{tag}>{e(c)}</{tag}>"
    head = "<thead><tr>" + "".join(cell(h, "th") for h in header) + "</tr></thead>"
    body = []
    for i, r in enumerate(rows):
        extra = "".join(f' {k}="{e(v)}"' for k, v in ((attrs or [{}] * len(rows))[i]).items())
        body.append(f"<tr{extra}>" + "".join(cell(c) for c in r) + "</tr>")
    return f'<table class="{cls}">{head}<tbody>{"".join(body)}</tbody></table>'


def is_point(p) -> bool:
    return isinstance(p, dict) and isinstance(p.get("layer_sizes"), list) and "backend" in p
