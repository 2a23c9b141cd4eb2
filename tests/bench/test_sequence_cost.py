"""The sequence-cost benchmark: both encoders at every token resolution, side by side."""

from __future__ import annotations

import pandas as pd

from perturbench.bench import sequence_cost


def test_sequence_cost_times_both_encoders_at_every_resolution(tmp_path, monkeypatch):
    monkeypatch.setattr(sequence_cost, "SCALES", {"tiny": (40, 2, 5)})
    monkeypatch.setattr(sequence_cost, "REPEATS", 1)
    sequence_cost.run(tmp_path)
    table = pd.read_csv(tmp_path / "sequence_cost.tsv", sep="\t")
    table["n_tokens"] = table["n_tokens"].fillna("").astype(str)
    pairs = set(zip(table["n_tokens"], table["encoder"], strict=True))
    assert pairs == {(str(t), e) for t in sequence_cost.TOKENS for e in ("mamba", "attention")} | {("", "none")}
    per_gene = table[table["n_tokens"] == "per_gene"]
    assert set(per_gene["sequence_length"]) == {64} and set(per_gene["genes_per_token"]) == {1}
    assert (table[["step_s", "epoch_s", "activation_mib"]] > 0).all().all()
    assert (table["epoch_s"] / table["step_s"]).round(2).eq(5.0).all()  # 5 steps per epoch (4 digits written)
    mamba = table[table["encoder"] == "mamba"].set_index("n_tokens")["activation_mib"]
    assert mamba["per_gene"] > mamba["16"]  # longer sequences hold more activations
