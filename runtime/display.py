"""Notebook display: small HTML tables for ``_repr_html_`` of programs and stats."""
from __future__ import annotations

import html


def html_table(title: str, rows: list[tuple[str, str]]) -> str:
    """A two-column HTML table with a caption."""
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                   f"{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table><caption style='text-align:left'><b>{html.escape(title)}</b></caption>{body}</table>"


def si(value: float | None, unit: str = "", digits: int = 3) -> str:
    """``1.5e-05, "s"`` → ``15 µs``."""
    if value is None:
        return "–"
    if value == 0:
        return f"0 {unit}".rstrip()
    for factor, prefix in ((1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, ""),
                           (1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T")):
        if abs(value) < factor * 1000:
            return f"{value / factor:.{digits}g} {prefix}{unit}".rstrip()
    return f"{value:.{digits}g} {unit}".rstrip()
