"""Report section 6 (genetic interactions) on the shared small results tree."""

from __future__ import annotations

import pandas as pd

from tests._reporttree import rendered_report


def test_interactions_section_shows_scatter_table_and_curve(tmp_path_factory):
    results = rendered_report(tmp_path_factory)
    html = (results / "report" / "sim.html").read_text()
    section = html[html.index('<section id="interactions">'):]
    assert section.count("data:image/png;base64,") == 2
    assert 'id="gi-magnitude"' in section and 'id="gi-detection"' in section
    metrics = pd.read_csv(results / "sim" / "interactions.tsv", sep="\t")
    ridge = metrics[(metrics["model"] == "ridge") & (metrics["subgroup"] == "all")].set_index("metric")["value"]
    assert f"<td>ridge</td><td class=\"num\">{int(ridge['n_doubles'])}.000</td>" in section
    assert "recall_synergistic" in section  # the truth's planted-type recall (simulated data)


def test_pseudobulk_only_dataset_without_interactions_says_so(tmp_path_factory):
    html = (rendered_report(tmp_path_factory) / "report" / "sim_pb.html").read_text()
    section = html[html.index('<section id="interactions">'):]
    assert "interactions.tsv was not produced" in section
