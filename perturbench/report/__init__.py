"""The HTML report: ``index.html`` (all datasets) plus one self-contained page per dataset.

Every asset is inline (CSS in ``<style>``, figures as base64 PNG ``data:`` URIs), so the pages
open from disk or an e-mail attachment with no network access. Layout of a dataset page:
the verdict table, 1. dataset card, 2. split card, 3. results tables per feature set (with noise
ceiling and Holm-corrected paired tests), 4. rank stability, 5. figures, 6. what the models learned,
the dual-stream components, 7. genetic interactions. Pure analyses live in
:mod:`perturbench.report.analyses`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perturbench.report.loaders import ReportError

__all__ = ["ReportError", "build_report"]


def build_report(results: Path, out: Path, *, config: dict) -> None:
    """Write ``out`` (the index page) and ``{dataset}.html`` beside it for each dataset.

    ``results`` is the workflow's results folder; ``config`` the workflow config (datasets,
    feature sets, model runs and ``report.highlight_conditions`` are read from it; with no
    ``datasets`` key every ``results/*/summary.tsv`` is reported). Raises :class:`ReportError`
    naming the missing file when the results tree is incomplete.
    """
    from perturbench.report import components, figure_sections, interactions_section, learned, sections, verdict_sections
    from perturbench.report.loaders import dataset_names, load_results
    from perturbench.report.render import render_page

    results, out = Path(results), Path(out)
    names = dataset_names(results, config)
    if out.stem in names:
        raise ReportError(f"{out}: the index page would overwrite dataset {out.stem!r}'s page; name it otherwise")
    overview: list[dict[str, Any]] = []
    for name in names:
        res = load_results(results, name, config)
        subgroups = sections.subgroup_order([*res.summary["subgroup"]])
        verdict = verdict_sections.verdict_table(res, subgroups)
        page = {
            "title": f"perturbench — {name}", "dataset": name, "models": res.models,
            "featuresets": res.featuresets, "seeds": res.seeds, "primary": res.primary,
            "card": sections.dataset_card(res), "split": sections.split_card(res),
            "verdict": verdict, "stability": verdict_sections.stability_tables(res, subgroups),
            "results": sections.results_section(res), "figures": figure_sections.figures_section(res),
            "learned": learned.learned_section(res),
            "components": components.components_section(res),
            "interactions": interactions_section.interactions_section(res),
        }
        render_page("dataset.html.j2", out.parent / f"{name}.html", **page)
        overview.append({"name": name, "page": f"{name}.html", "card": page["card"], "models": res.models,
                         "featuresets": res.featuresets, "seeds": res.seeds, "primary": res.primary,
                         "headline": sections.headline_rows(res), "verdict": verdict})
    render_page("index.html.j2", out, title="perturbench report", datasets=overview)
