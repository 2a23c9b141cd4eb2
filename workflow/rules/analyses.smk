# The analyses the report shows, as tables (perturbench.analysis_tables): a TSV and a JSON
# sidecar each (header only plus the reason when an analysis is not available). The noise
# ceiling runs on every feature set; the per-model analyses on the report's primary one.

from perturbench.workflow import analysis_files, prediction_files

ANALYSIS_SPLITS = expand(
    "results/{{dataset}}/splits/seed{seed}.json", seed=config["seeds"]
)


rule noise_ceiling:
    input:
        data="results/{dataset}/{featureset}/pseudobulk.h5ad",
        cells="results/{dataset}/{featureset}/cells_ref.json",
        prepared_cells="results/{dataset}/prepared/cells.h5ad",
        splits=ANALYSIS_SPLITS,
    output:
        table="results/{dataset}/{featureset}/noise_ceiling.tsv",
        sidecar="results/{dataset}/{featureset}/noise_ceiling.json",
    log:
        "results/logs/{dataset}/{featureset}/noise_ceiling.log",
    benchmark:
        "results/benchmarks/{dataset}/{featureset}/noise_ceiling.tsv"
    conda:
        "../envs/perturbench.yaml"
    resources:
        mem_mb=input_mem_mb(1000, 2.5),  # loads the cells
        runtime=30,
    shell:
        "perturbench noise-ceiling --data {input.data:q} --splits {input.splits:q} "
        "--out {output.table:q} 2> {log:q}"


rule recurrent_genes:
    input:
        data="results/{dataset}/{featureset}/pseudobulk.h5ad",
        splits=ANALYSIS_SPLITS,
        predictions=lambda w: prediction_files(config, w.dataset, w.featureset),
    output:
        table="results/{dataset}/{featureset}/recurrent_genes.tsv",
        sidecar="results/{dataset}/{featureset}/recurrent_genes.json",
    log:
        "results/logs/{dataset}/{featureset}/recurrent_genes.log",
    benchmark:
        "results/benchmarks/{dataset}/{featureset}/recurrent_genes.tsv"
    conda:
        "../envs/perturbench.yaml"
    resources:
        mem_mb=lambda w: int(1000 + 4 * featureset_pseudobulk_mib(w)),
        runtime=15,
    shell:
        "perturbench recurrent-genes --data {input.data:q} --splits {input.splits:q} "
        "--predictions {input.predictions:q} --out {output.table:q} 2> {log:q}"


rule attribution_agreement:
    input:
        predictions=lambda w: prediction_files(config, w.dataset, w.featureset),
    output:
        table="results/{dataset}/{featureset}/attribution_agreement.tsv",
        sidecar="results/{dataset}/{featureset}/attribution_agreement.json",
    log:
        "results/logs/{dataset}/{featureset}/attribution_agreement.log",
    benchmark:
        "results/benchmarks/{dataset}/{featureset}/attribution_agreement.tsv"
    conda:
        "../envs/perturbench.yaml"
    resources:
        mem_mb=1000,  # reads only uns['attribution'] of each file
        runtime=10,
    shell:
        "perturbench attribution-agreement --predictions {input.predictions:q} "
        "--out {output.table:q} 2> {log:q}"


rule go_enrichment:
    input:
        recurrent=rules.recurrent_genes.output.table,
        recurrent_sidecar=rules.recurrent_genes.output.sidecar,
        data="results/{dataset}/{featureset}/pseudobulk.h5ad",
        gene2go=lambda w: go_table(config, w.dataset) or [],
        terms=config.get("go", {}).get("terms") or [],
    output:
        table="results/{dataset}/{featureset}/go_enrichment.tsv",
        sidecar="results/{dataset}/{featureset}/go_enrichment.json",
    log:
        "results/logs/{dataset}/{featureset}/go_enrichment.log",
    benchmark:
        "results/benchmarks/{dataset}/{featureset}/go_enrichment.tsv"
    conda:
        "../envs/perturbench.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "perturbench go-enrichment --recurrent {input.recurrent:q} --data {input.data:q} "
        "--gene2go={input.gene2go:q} --terms={input.terms:q} --out {output.table:q} 2> {log:q}"
