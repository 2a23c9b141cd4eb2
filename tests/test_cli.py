"""The ``perturbench`` command: bad inputs give one clear error line and write nothing."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from perturbench.cli import main


def write_table(path, rows: dict[str, list[float]], genes=("A", "B", "C")):
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(genes))
    frame.index.name = "condition"
    frame.reset_index().to_csv(path, sep="\t", index=False)
    return path


def prepare(tmp_path, table) -> tuple[int, list]:
    spec = json.dumps({"source": "pseudobulk", "path": str(table)})
    out = tmp_path / "out"
    code = main(["prepare", "--name", "d", "--spec", spec, "--inputs", str(table), "--out-dir", str(out)])
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    return code, written


GOOD = {"ctrl": [1.0, 2.0, 3.0], "A": [1.5, 2.0, 3.0], "A+B": [1.0, 2.5, 3.1]}


def test_prepare_good_table_writes_contract_files(tmp_path):
    code, written = prepare(tmp_path, write_table(tmp_path / "t.tsv", GOOD))
    assert code == 0
    assert {p.name for p in written} == {"pseudobulk.h5ad", "cells.h5ad"}
    pb = ad.read_h5ad(tmp_path / "out" / "pseudobulk.h5ad")
    assert set(pb.obs_names) == {"ctrl", "A", "A+B"}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({k: v for k, v in GOOD.items() if k != "ctrl"}, "ctrl"),
        ({**GOOD, "A++B": [1.0, 1.0, 1.0]}, "A++B"),
        ({**GOOD, "ctrl+ctrl": [1.0, 1.0, 1.0]}, "ctrl+ctrl"),
        ({**GOOD, "B": [np.nan, 1.0, 1.0]}, "NaN"),
        ({**GOOD, "B": [np.inf, 1.0, 1.0]}, "inf"),
    ],
)
def test_prepare_bad_table_names_file_and_writes_nothing(tmp_path, capsys, rows, message):
    table = write_table(tmp_path / "bad.tsv", rows)
    code, written = prepare(tmp_path, table)
    err = capsys.readouterr().err
    assert code == 1
    assert written == []
    assert "bad.tsv" in err and message in err


def test_prepare_duplicate_genes_is_an_error(tmp_path, capsys):
    table = write_table(tmp_path / "dup.tsv", GOOD, genes=("A", "B", "A"))
    code, written = prepare(tmp_path, table)
    assert code == 1 and written == []
    assert "dup.tsv" in capsys.readouterr().err


def test_tampered_split_manifest_is_rejected(tmp_path, capsys):
    table = write_table(tmp_path / "t.tsv", {**GOOD, "B": [1.0, 2.2, 3.0], "C": [0.9, 2.0, 3.3]})
    assert prepare(tmp_path, table)[0] == 0
    manifest = tmp_path / "seed1.json"
    assert main(["split", "--data-dir", str(tmp_path / "out"), "--dataset", "d", "--seed", "1", "--out", str(manifest)]) == 0
    content = json.loads(manifest.read_text())
    content["train"] = list(content["train"]) + ["EXTRA"]
    manifest.write_text(json.dumps(content))
    prediction = tmp_path / "pred.h5ad"
    code = main(["fit-predict", "--data-dir", str(tmp_path / "out"), "--split", str(manifest), "--model", "mean",
                 "--log-dir", str(tmp_path / "log"), "--out", str(prediction)])
    assert code == 1
    assert not prediction.exists()
    assert "seed1.json" in capsys.readouterr().err


def test_bad_json_argument_is_reported(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--name", "d", "--spec", "{not json", "--out-dir", "x"])
    assert "not valid JSON" in capsys.readouterr().err
