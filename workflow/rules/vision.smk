# The vision track (LPA paper Sec 5.2-5.4, appendix H): ResNets and ViTs on images (lpa_core/vision.py), one job
# per run, then tables and figures from the runs' CSV/npz (lpa_core/vision_report.py).
#
#   {RUNS}/{vexp}/{dataset}/{arch}/{setting}/seed{seed}/     one run (layerwise, history, summary, embeddings,
#                                                            inference CSV/npz, run.json)
#     vexp     table2 (Tables 2-3, Figs 4-6/9), sec54 (Sec 5.4 unit sizes), fig10 (learning rates), table4 (ImageNet)
#     setting  a paradigm (lpa_core.paradigms), or a variant of one:
#                lpa_grouped_k{k}   LPA over units of k blocks (Sec 5.4)
#                {paradigm}_lrx{f}  the paradigm at f x the recipe's learning rate (Fig 10)
#              A variant equal to a Table 2 run (k = vision.train.group_size, f = 1) is not trained again: the
#              aggregation reads the Table 2 run.
#   training keys: vision.recipes.<family> (resnet/vit), then vision.train, then the scale's overrides of both
#   (scales.<scale>.vision.recipes / .train), then the variant's lr or group size.
#   archs: vision.archs at scale paper; at another scale, scales.<scale>.vision.archs maps each paper arch to the
#   model that stands in for it (quick: resnet18 -> resnet10_w16, vit24 -> vit6_d64); tables show the paper's
#   value of the arch it stands in for, and say so.
# Data: CIFAR is downloaded into vision.data_dir on first use; a job whose dataset is not there yet first runs
# `python -m lpa_core fetch-data` (a shell test decides, not a param) under a file lock (one download; parallel
# jobs wait for it). On a cluster whose nodes are offline: `snakemake fetch_data --cores 1` on the login node first.


wildcard_constraints:
    vexp="table2|sec54|fig10|table4",
    setting=SETTING_RE,
    seed="[0-9]+",
    dataset="[a-z0-9_]+",


rule train_vision:
    input:
        lambda w: fresh_check(f"{RUNS}/{w.vexp}/{w.dataset}/{w.arch}/{w.setting}/seed{w.seed}", vision_args(w)),
    output:
        **{f: f"{RUNS}/{{vexp}}/{{dataset}}/{{arch}}/{{setting}}/seed{{seed}}/{f}.csv" for f in _RUN_FILES},
        embeddings=f"{RUNS}/{{vexp}}/{{dataset}}/{{arch}}/{{setting}}/seed{{seed}}/embeddings.npz",
        run=f"{RUNS}/{{vexp}}/{{dataset}}/{{arch}}/{{setting}}/seed{{seed}}/run.json",
        fresh=touch(f"{RUNS}/{{vexp}}/{{dataset}}/{{arch}}/{{setting}}/seed{{seed}}/{FRESH}"),
    params:
        args=vision_args,
        scale=SCALE,
        have_data=lambda w: data_check(w.dataset),
        data_dir=V_DATA,
        out=lambda w, output: os.path.dirname(output.run),
        ckpt=lambda w: f"checkpoints/{SCALE}/{w.vexp}/{w.dataset}/{w.arch}/{w.setting}/seed{w.seed}",
    log:
        f"logs/{SCALE}/{{vexp}}/{{dataset}}/{{arch}}/{{setting}}/seed{{seed}}.log",
    threads: rule_threads("train_vision")
    resources:
        **rule_resources("train_vision"),
    conda:
        "../../environment.yml"
    shell:
        gpu_claim("train_vision")
        + "(({params.have_data} || python -m lpa_core fetch-data --datasets {wildcards.dataset} --data-dir {params.data_dir})"
        " && python -m lpa_core train {params.args} --scale {params.scale} --threads {threads} --out {params.out} --ckpt-dir {params.ckpt} --parent-pid $PPID) > {log} 2>&1"


rule fetch_data:  # not part of `all`: `snakemake fetch_data --cores 1` downloads the configured datasets now
    output:
        touch(expand(f"{V_DATA}/.fetched_{{dataset}}", dataset=VIS["datasets"])),
    params:
        datasets=",".join(VIS["datasets"]),
        data_dir=lambda w, output: os.path.dirname(output[0]),
    log:
        "logs/fetch_data.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core fetch-data --datasets {params.datasets} --data-dir {params.data_dir} > {log} 2>&1"


rule table2:
    input:
        stamp=REGEN,
        fresh=fresh_markers(T2_DIRS),
        run=[f"{d}/run.json" for d in T2_DIRS],
        layerwise=[f"{d}/layerwise.csv" for d in T2_DIRS],
        summary=[f"{d}/summary.csv" for d in T2_DIRS],
        paper=config["paper_results"],
    output:
        csv=f"{TABLES}/table2.csv",
        md=f"{TABLES}/table2.md",
    params:
        dirs=_dirs,
        args=VTABLE,
    log:
        f"logs/{SCALE}/table2.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core vision-table --table table2 --runs {params.dirs} {params.args} --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"


rule table3:
    input:
        stamp=REGEN,
        fresh=fresh_markers(T3_DIRS),
        run=[f"{d}/run.json" for d in T3_DIRS],
        layerwise=[f"{d}/layerwise.csv" for d in T3_DIRS],
        summary=[f"{d}/summary.csv" for d in T3_DIRS],
        paper=config["paper_results"],
    output:
        csv=f"{TABLES}/table3.csv",
        md=f"{TABLES}/table3.md",
    params:
        dirs=_dirs,
        args=VTABLE,
    log:
        f"logs/{SCALE}/table3.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core vision-table --table table3 --runs {params.dirs} {params.args} --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"


rule sec54:
    input:
        stamp=REGEN,
        fresh=fresh_markers(SEC54_DIRS),
        run=[f"{d}/run.json" for d in SEC54_DIRS],
        layerwise=[f"{d}/layerwise.csv" for d in SEC54_DIRS],
        summary=[f"{d}/summary.csv" for d in SEC54_DIRS],
        paper=config["paper_results"],
    output:
        csv=f"{TABLES}/sec54.csv",
        md=f"{TABLES}/sec54.md",
    params:
        dirs=_dirs,
        args=VTABLE,
    log:
        f"logs/{SCALE}/sec54.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core vision-table --table sec54 --runs {params.dirs} {params.args} --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"


rule inference:
    input:
        stamp=REGEN,
        fresh=fresh_markers(T2_DIRS),
        run=[f"{d}/run.json" for d in T2_DIRS],
        layerwise=[f"{d}/layerwise.csv" for d in T2_DIRS],
        inference=[f"{d}/inference.csv" for d in T2_DIRS],
    output:
        csv=f"{TABLES}/inference.csv",
        md=f"{TABLES}/inference.md",
        fig=f"{FIGS}/fig_inference.png",
    params:
        dirs=_dirs,
        args=VTABLE,
    log:
        f"logs/{SCALE}/inference.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core vision-inference --runs {params.dirs} {params.args} --out-csv {output.csv} --out-md {output.md} --out-fig {output.fig} > {log} 2>&1"


rule vision_figures:
    input:
        stamp=REGEN,
        fresh=fresh_markers(T2_DIRS + FIG10_DIRS),
        run=[f"{d}/run.json" for d in T2_DIRS],
        layerwise=[f"{d}/layerwise.csv" for d in T2_DIRS],
        history=[f"{d}/history.csv" for d in T2_DIRS + FIG10_DIRS],
        embeddings=[f"{d}/embeddings.npz" for d in T2_DIRS],
        fig10=[f"{d}/run.json" for d in FIG10_DIRS],
        paper=config["paper_results"],
    output:
        fig4=expand(f"{FIGS}/fig4_layerwise_{{dataset}}.png", dataset=VIS["datasets"]),
        fig5=expand(f"{FIGS}/fig5_tsne_{{dataset}}_{{arch}}.png", dataset=VIS["datasets"], arch=V_ARCHS),
        fig6=expand(f"{FIGS}/fig6_curves_{{dataset}}.png", dataset=VIS["datasets"]),
        fig10=f"{FIGS}/fig10_lr.png",
        csv=f"{TABLES}/fig6.csv",
    params:
        dirs=_dirs,
        fig10=lambda w, input: [os.path.dirname(f) for f in input.fig10],
        outdir=lambda w, output: os.path.dirname(output.fig10),
        args=VTABLE,
    log:
        f"logs/{SCALE}/vision_figures.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core vision-figures --runs {params.dirs} --lr-runs {params.fig10} {params.args} --outdir {params.outdir}"
        " --out-csv {output.csv} > {log} 2>&1"


# Table 4 only when vision.imagenet_dir is set: otherwise the rule does not exist and `all` does not ask for it
# (profiles/regenerate's forcerun leaves it out for that reason; see there).
if IMAGENET:

    rule table4:
        input:
            stamp=REGEN,
            fresh=fresh_markers(T4_DIRS),
            run=[f"{d}/run.json" for d in T4_DIRS],
            layerwise=[f"{d}/layerwise.csv" for d in T4_DIRS],
            summary=[f"{d}/summary.csv" for d in T4_DIRS],
            paper=config["paper_results"],
        output:
            csv=f"{TABLES}/table4.csv",
            md=f"{TABLES}/table4.md",
        params:
            dirs=_dirs,
            args=VTABLE,
        log:
            f"logs/{SCALE}/table4.log",
        conda:
            "../../environment.yml"
        shell:
            "python -m lpa_core vision-table --table table4 --runs {params.dirs} {params.args} --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"


VISION_OUT = [*rules.table2.output, *rules.table3.output, *rules.sec54.output, *rules.inference.output,
              *rules.vision_figures.output, *(rules.table4.output if IMAGENET else [])]
