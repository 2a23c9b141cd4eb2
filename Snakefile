# perturbench: benchmark of Perturb-seq perturbation-response prediction against linear baselines.
# Stages live in workflow/rules/*.smk; the logic lives in the perturbench package (the rules call
# the `perturbench` command). Config: workflow/config/*.yaml, validated against schema.yaml.

from snakemake.utils import min_version, validate

min_version("8.20")


# The full benchmark by default; `--configfile` replaces it (Snakemake would otherwise merge both).
if not config:

    configfile: "workflow/config/config.yaml"


validate(config, "workflow/config/schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/uncertainty.smk"
include: "workflow/rules/interactions.smk"
include: "workflow/rules/analyses.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/bench.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
