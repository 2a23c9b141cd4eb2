"""The HTML report rendered from a real (tiny) finished results tree: content, numbers, assets."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from perturbench.evaluate import paired_wilcoxon
from perturbench.report import ReportError, build_report
from perturbench.report.analyses import BASELINES
from perturbench.report.render import fmt_num
from perturbench.verdict import best_of, in_subgroup
from tests._reporttree import rendered_report

pytestmark = pytest.mark.slow
PNG_IMG = '<img src="data:image/png;base64,'


class _Cells(HTMLParser):
    """Collects summary cells of ``table.metric``: (featureset, metric, model, subgroup) → attrs + text."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str, str, str], dict] = {}
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.sources: list[str] = []
        self._table: dict | None = None
        self._subgroups: list[str] = []
        self._model: str | None = None
        self._column = 0
        self._cell: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if "href" in a:
            self.links.append(a["href"])
        if "src" in a:
            self.sources.append(a["src"])
        if tag == "table" and "metric" in (a.get("class") or "").split():
            self._table, self._subgroups = a, []
        elif self._table is not None and tag == "th" and "data-subgroup" in a:
            self._subgroups.append(a["data-subgroup"])
        elif self._table is not None and tag == "tr" and "data-model" in a:
            self._model, self._column = a["data-model"], 0
        elif self._model is not None and tag == "td":
            self._column += 1
            if "data-mean" in a:
                self._cell = {**a, "text": ""}
                key = (self._table["data-featureset"], self._table["data-metric"], self._model,
                       self._subgroups[self._column - 2])
                self.cells[key] = self._cell

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        elif tag == "table":
            self._table, self._model = None, None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The results folder, with the report rendered into results/report/."""
    return rendered_report(tmp_path_factory)


def parse(path: Path) -> tuple[str, _Cells]:
    html = path.read_text()
    parser = _Cells()
    parser.feed(html)
    return html, parser


def test_writes_index_and_one_page_per_dataset(report):
    pages = sorted(p.name for p in (report / "report").iterdir())
    assert pages == ["index.html", "sim.html", "sim_pb.html"]
    _, parsed = parse(report / "report" / "index.html")
    assert {"sim.html", "sim_pb.html"} <= set(parsed.links)
    assert "headline-table" in parsed.ids


@pytest.mark.parametrize("dataset", ["sim", "sim_pb"])
def test_tables_show_exactly_the_summary_numbers(report, dataset):
    summary = pd.read_csv(report / dataset / "summary.tsv", sep="\t")
    _, parsed = parse(report / "report" / f"{dataset}.html")
    assert len(parsed.cells) == len(summary)
    for row in summary.itertuples(index=False):
        cell = parsed.cells[(row.featureset, row.metric, row.model, row.subgroup)]
        for column in ("mean", "ci_low", "ci_high"):
            shown = float(cell[f"data-{column.replace('_', '-')}"])
            expected = getattr(row, column)
            assert shown == expected or (pd.isna(shown) and pd.isna(expected)), (row, column)
            assert fmt_num(expected) in cell["text"]
        assert int(cell["data-n"]) == row.n


def test_sections_and_every_figure_are_embedded(report):
    html, parsed = parse(report / "report" / "sim.html")
    for anchor in ("card", "split", "results", "results-full", "results-no_mt", "figures", "learned",
                   "featuresets", "variance", "splits", "recurrent", "attribution", "enrichment", "components",
                   "calibration"):
        assert anchor in parsed.ids, anchor
    figures = re.findall(r"<figure id=\"([^\"]+)\">(.*?)</figure>", html, flags=re.DOTALL)
    assert [f for f, _ in figures] == ["fig-mse", "fig-loss", "fig-dstate", "fig-uncertainty", "fig-highlight",
                                       "fig-l2", "fig-relative", "fig-spread", "fig-featuresets", "fig-calibration",
                                       "gi-magnitude", "gi-detection"]
    assert all(body.count(PNG_IMG) == 1 for _, body in figures)
    assert html.count(PNG_IMG) == len(figures)
    for src in parsed.sources:
        assert base64.b64decode(src.removeprefix("data:image/png;base64,"))[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("page", ["index.html", "sim.html", "sim_pb.html"])
def test_pages_are_self_contained(report, page):
    html, parsed = parse(report / "report" / page)
    assert "http:" not in html and "https:" not in html and "//" not in "".join(parsed.links)
    assert all(src.startswith("data:") for src in parsed.sources)
    for link in parsed.links:
        if link.startswith("#"):
            assert link[1:] in parsed.ids, link
        elif not link.startswith("data:"):
            assert (report / "report" / link).is_file(), link
    assert "<style>" in html and "<link rel=\"stylesheet\"" not in html and "<script" not in html


def test_pseudobulk_only_dataset_says_what_is_not_available(report):
    html = (report / "report" / "sim_pb.html").read_text()
    assert "not available: no cells" in html
    assert "not available: no Mamba run wrote loss_curves.tsv" in html
    assert "not available: only one feature set was run" in html
    assert "not available: GO annotation table" in html
    drawn = {f for f, body in re.findall(r"<figure id=\"([^\"]+)\">(.*?)</figure>", html, flags=re.DOTALL)
             if PNG_IMG in body}
    assert drawn == {"fig-mse", "fig-highlight", "fig-l2", "fig-relative", "fig-spread"}


def test_comparison_reference_is_the_best_baseline_of_each_subgroup(report):
    conditions = pd.read_csv(report / "sim" / "conditions.tsv", sep="\t")
    comp = pd.read_csv(report / "sim" / "comparisons.tsv", sep="\t")
    baselines = [m for m in BASELINES if m in set(conditions["model"])]
    html = (report / "report" / "sim.html").read_text()
    section = html[html.index('id="results-full"'):html.index('id="results-no_mt"')]
    table = section[section.index('class="comparisons" data-metric="pearson_delta"'):]
    table = table[:table.index("</table>")]
    full = conditions[conditions["featureset"] == "full"]
    subgroups = re.findall(r'<th class="num">([a-z_0-9]+)</th>', table)
    shown = re.findall(r'data-reference="([^"]*)"', table)
    expected = [best_of(in_subgroup(full, g), baselines, "pearson_delta") or "" for g in subgroups]
    assert "all" in subgroups and shown == expected
    row = comp[(comp["featureset"] == "full") & (comp["metric"] == "pearson_delta") & (comp["subgroup"] == "all")
               & (comp["model"] == "dual_stream_mamba")].iloc[0]
    _, p, n = paired_wilcoxon(full, model="dual_stream_mamba", reference=row["reference"], metric="pearson_delta")
    assert row["n"] == n and row["p"] == pytest.approx(p, rel=1e-5)
    cell = table[table.index("<tr><td>dual_stream_mamba</td>"):]
    cell = cell[:cell.index("</tr>")].split("<td")[-1]
    assert f"n={n}" in cell and ("p_holm = " in cell or "cannot reach" in cell)


def test_verdict_table_on_the_page_and_the_index(report):
    verdict = pd.read_csv(report / "sim" / "verdict.tsv", sep="\t")
    assert set(verdict["model"]) == {"dual_stream_mamba", "dual_stream_mamba_dstate4"}
    assert set(verdict["verdict"]) <= {"better", "tie", "worse"}
    page = (report / "report" / "sim.html").read_text()
    index = (report / "report" / "index.html").read_text()
    shown = re.findall(r'data-verdict="([a-z]+)"', page[page.index('id="verdict-table"'):])
    assert len(shown) == len(verdict) and 'id="verdict-sim"' in index and "Holm" in page
    assert "verdict not available: no non-baseline model was run" in (report / "report" / "sim_pb.html").read_text()


def test_split_card_counts_relabelled_conditions(report):
    from perturbench.splits import read_manifest

    split = read_manifest(report / "sim" / "splits" / "seed1.json")
    html = (report / "report" / "sim.html").read_text()
    card = html[html.index('id="splits"'):]
    card = card[:card.index("</table>")]
    assert f'<td class="num" title="{"; ".join(f"{k}: {v}" for k, v in split.relabelled().items())}">' in card


def test_rank_stability_section_shows_the_table(report):
    stability = pd.read_csv(report / "sim" / "rank_stability.tsv", sep="\t")
    assert {"featureset", "metric", "reference"} <= set(stability["kind"])
    html = (report / "report" / "sim.html").read_text()
    assert html.count('class="stability"') == 3


def test_learned_section_compares_attributions_and_lists_recurrent_genes(report):
    html = (report / "report" / "sim.html").read_text()
    learned = html[html.index('id="learned"'):]
    table = learned[learned.index('id="attribution"'):learned.index("</table>", learned.index('id="attribution"'))]
    assert table.count("<tr>") == 3  # header + ridge + dual_stream_mamba
    assert "ρ 1.000" in table and "top-20: 20/20" in table
    assert "truth" in learned and "sameness" in learned
    assert "SIM:" in learned  # GO terms of the simulated annotation table


def test_index_headline_numbers_come_from_the_summary(report):
    summary = pd.read_csv(report / "sim" / "summary.tsv", sep="\t")
    html = (report / "report" / "index.html").read_text()
    rows = summary[(summary["featureset"] == "full") & (summary["metric"] == "pearson_delta")
                   & (summary["subgroup"] == "all")]
    baselines = [m for m in BASELINES if m in set(rows["model"])]
    conditions = pd.read_csv(report / "sim" / "conditions.tsv", sep="\t")
    best = best_of(conditions[conditions["featureset"] == "full"], baselines, "pearson_delta")
    mean = rows.set_index("model").loc[best, "mean"]
    assert f'data-mean="{mean}"' in html


def test_missing_summary_raises_naming_the_file(tmp_path):
    with pytest.raises(ReportError, match=r"sim[/\\]summary\.tsv: missing"):
        build_report(tmp_path / "results", tmp_path / "report" / "index.html", config={"datasets": {"sim": {}}})


def test_no_datasets_raises(tmp_path):
    with pytest.raises(ReportError, match="no datasets"):
        build_report(tmp_path / "results", tmp_path / "report" / "index.html", config={})
