# Downloads run on the submitting (login) node: compute nodes often have no internet.
localrules:
    download,
    download_gene2go,


rule download:
    output:
        "results/downloads/{remote}.archive",
    log:
        "results/logs/download/{remote}.log",
    benchmark:
        "results/benchmarks/download/{remote}.tsv"
    conda:
        "../envs/perturbench.yaml"
    params:
        url=lambda w: remote_url(w.remote),
        sha256=lambda w: remote_sha256(w.remote),
    shell:
        "perturbench download --url {params.url:q} --sha256={params.sha256:q} --out {output:q} 2> {log:q}"


rule download_gene2go:
    output:
        "results/downloads/gene2go_all.pkl",
    log:
        "results/logs/download/gene2go.log",
    benchmark:
        "results/benchmarks/download/gene2go.tsv"
    conda:
        "../envs/perturbench.yaml"
    params:
        url=lambda w: remote_url("gene2go"),
        sha256=config["go"].get("sha256") or "",
    shell:
        "perturbench download --url {params.url:q} --sha256={params.sha256:q} --out {output:q} 2> {log:q}"


rule simulate:
    output:
        data="results/{dataset}/raw/perturb_processed.h5ad",
        go="results/{dataset}/raw/gene2go.tsv.gz",
    log:
        "results/logs/{dataset}/simulate.log",
    benchmark:
        "results/benchmarks/{dataset}/simulate.tsv"
    conda:
        "../envs/perturbench.yaml"
    resources:
        mem_mb=simulate_mem_mb,
        runtime=30,
    params:
        preset=lambda w: config["datasets"][w.dataset].get("preset", "demo"),
        params=lambda w: json.dumps(config["datasets"][w.dataset].get("params", {})),
    shell:
        "perturbench simulate --preset {params.preset:q} --params {params.params:q} "
        "--out {output.data:q} --go-out {output.go:q} 2> {log:q}"


rule prepare_dataset:
    input:
        source_inputs,
    output:
        pseudobulk="results/{dataset}/prepared/pseudobulk.h5ad",
        cells="results/{dataset}/prepared/cells.h5ad",
    log:
        "results/logs/{dataset}/prepare.log",
    benchmark:
        "results/benchmarks/{dataset}/prepare.tsv"
    conda:
        "../envs/perturbench.yaml"
    resources:
        mem_mb=input_mem_mb(1000, 1.5),
        runtime=30,
    params:
        spec=lambda w: spec_json(w.dataset),
    shell:
        "perturbench prepare --name {wildcards.dataset} --spec {params.spec:q} "
        "--inputs {input:q} --out-dir {output.pseudobulk:q} 2> {log:q}"


rule featureset:
    input:
        pseudobulk=rules.prepare_dataset.output.pseudobulk,
        cells=rules.prepare_dataset.output.cells,
    output:
        pseudobulk=report(
            "results/{dataset}/{featureset}/pseudobulk.h5ad",
            caption="../report/pseudobulk.rst",
            category="Data",
        ),
        cells="results/{dataset}/{featureset}/cells_ref.json",  # a gene mask over the prepared cells
        record="results/{dataset}/{featureset}/featureset.json",
    log:
        "results/logs/{dataset}/{featureset}/featureset.log",
    benchmark:
        "results/benchmarks/{dataset}/{featureset}/featureset.tsv"
    conda:
        "../envs/perturbench.yaml"
    resources:
        mem_mb=lambda w: int(1000 + 4 * pseudobulk_mib(w)),
        runtime=10,
    shell:
        "perturbench featureset --in-dir {input.pseudobulk:q} "
        "--featureset {wildcards.featureset} --out-dir {output.pseudobulk:q} 2> {log:q}"


rule split:
    input:
        data="results/{dataset}/prepared/pseudobulk.h5ad",
        cells="results/{dataset}/prepared/cells.h5ad",
    output:
        "results/{dataset}/splits/seed{seed}.json",
    log:
        "results/logs/{dataset}/split_seed{seed}.log",
    benchmark:
        "results/benchmarks/{dataset}/split_seed{seed}.tsv"
    conda:
        "../envs/perturbench.yaml"
    params:
        split=lambda w: split_json(w.dataset),
    shell:
        "perturbench split --data-dir {input.data:q} --dataset {wildcards.dataset} "
        "--seed {wildcards.seed} --params {params.split:q} --out {output:q} 2> {log:q}"


rule cell_split_data:
    input:
        data="results/{dataset}/{featureset}/pseudobulk.h5ad",
        cells="results/{dataset}/{featureset}/cells_ref.json",
        prepared_cells="results/{dataset}/prepared/cells.h5ad",
        split="results/{dataset}/splits/seed{seed}.json",
    output:
        train="results/{dataset}/{featureset}/seed{seed}/cellsplit/train/pseudobulk.h5ad",
        val="results/{dataset}/{featureset}/seed{seed}/cellsplit/val/pseudobulk.h5ad",
        truth="results/{dataset}/{featureset}/seed{seed}/cellsplit/truth/pseudobulk.h5ad",
    log:
        "results/logs/{dataset}/{featureset}/seed{seed}/cell_split_data.log",
    benchmark:
        "results/benchmarks/{dataset}/{featureset}/seed{seed}/cell_split_data.tsv"
    conda:
        "../envs/perturbench.yaml"
    resources:
        # k562 preset (2.36 GiB cells): 5.5-5.75 GB RSS, 47 CPU s (190 s wall on a loaded machine)
        mem_mb=lambda w: int(1000 + 2.5 * cells_mib(w)),
        runtime=lambda w: int(5 + 5 * cells_mib(w) / 1024),
    shell:
        "perturbench cell-split-data --data-dir results/{wildcards.dataset}/{wildcards.featureset} "
        "--split {input.split:q} --out-dir results/{wildcards.dataset}/{wildcards.featureset}/seed{wildcards.seed}/cellsplit "
        "2> {log:q}"


rule go_graph:
    input:
        data="results/{dataset}/prepared/pseudobulk.h5ad",
        table=lambda w: go_table(config, w.dataset),
    output:
        "results/{dataset}/go_graph.npz",
    log:
        "results/logs/{dataset}/go_graph.log",
    benchmark:
        "results/benchmarks/{dataset}/go_graph.tsv"
    conda:
        "../envs/perturbench.yaml"
    params:
        aliases=config["go"].get("aliases") or "",
        top_k=config["go"].get("top_k", 20),
        min_weight=config["go"].get("min_weight", 0.1),
    shell:
        "perturbench go-graph --data-dir {input.data:q} --gene2go {input.table:q} "
        "--aliases={params.aliases:q} --top-k {params.top_k} --min-weight {params.min_weight} "
        "--out {output:q} 2> {log:q}"
