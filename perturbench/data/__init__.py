"""The data layer: the dataset contract and its sources (GEARS archives, cells, pseudobulk
tables, the simulator), feature sets and DE genes. Imports nothing else of ours."""

from perturbench.data.conditions import CTRL, ConditionError, canonical_condition, perturbed_genes, targets
from perturbench.data.contract import DatasetError, PerturbDataset
from perturbench.data.store import load_dataset, save_dataset

__all__ = [
    "CTRL",
    "ConditionError",
    "DatasetError",
    "PerturbDataset",
    "canonical_condition",
    "load_dataset",
    "perturbed_genes",
    "save_dataset",
    "targets",
]
