"""Jinja2 rendering of the report pages: one environment, the number filters, atomic writes.

Number formats (the same everywhere, so a table cell can be traced back to summary.tsv):
``num`` shows 3 decimals for 0.001 ≤ |x| < 10⁴ (and 0), else 3 significant digits in
scientific notation; integers keep all digits; NaN / None show as an em dash.
"""

from __future__ import annotations

import math
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import jinja2

from perturbench.data.io import write_text_atomic

DASH = "—"


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_num(x) -> str:
    """The report's number format (module docstring)."""
    if _missing(x):
        return DASH
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    x = float(x)
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.3f}"
    return f"{x:.2e}"


def fmt_signed(x) -> str:
    """:func:`fmt_num` with an explicit sign for non-negative values."""
    text = fmt_num(x)
    return text if _missing(x) or text.startswith("-") else f"+{text}"


def fmt_pval(p) -> str:
    """Two significant digits; below 10⁻⁴ as ``<1e-4``."""
    if _missing(p):
        return DASH
    return "<1e-4" if p < 1e-4 else f"{p:.2g}"


def fmt_pct(x) -> str:
    """A fraction as a percentage with one decimal."""
    return DASH if _missing(x) else f"{100 * x:.1f}%"


def fmt_thousands(x) -> str:
    """An integer with thousands separators."""
    return DASH if _missing(x) else f"{int(x):,}"


def environment() -> jinja2.Environment:
    """The report's Jinja2 environment (templates shipped in ``perturbench/report/templates``)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("perturbench.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=fmt_num, signed=fmt_signed, pval=fmt_pval, pct=fmt_pct, thousands=fmt_thousands)
    return env


def _version() -> str:
    try:
        return version("perturbench")
    except PackageNotFoundError:
        return "unknown"


def render_page(template: str, path: Path, **context) -> None:
    """Render ``template`` with ``context`` and write it atomically to ``path``."""
    html = environment().get_template(template).render(version=_version(), **context)
    write_text_atomic(path, html)
