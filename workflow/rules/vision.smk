# The vision track (LPA paper Sec 5.2-5.4, appendix H): ResNets and ViTs on images (lpa_core/vision.py), one job
# per run, then tables and figures from the runs' CSV/npz (lpa_core/report/).
#
#   {RUNS}/{vexp}/{dataset}/{arch}/{setting}/seed{seed}/     one run (layerwise, history, summary, embeddings,
#                                                            inference CSV/npz, run.json)
#     vexp     table2 (Tables 2-3, Figs 4-6/9), sec54 (Sec 5.4 unit sizes), fig10 (learning rates), table4 (ImageNet),
#              eqflops (issue 12's equal compute: setting simultaneous only, Table 2's keys but the epochs at which
#              Simultaneous trains LPA's analytic FLOPs, lpa_core.cost.equal_flops_epochs: round(E (3 (F_1 + ...
#              + F_L + F_L) - (L+1) stem) / (3 F_L - stem)), F_k = forward FLOPs at depth k; target rule
#              vision_equal_compute)
#     dataset  a registered image dataset, or the label of an image folder (imagefolder:PATH -> imagefolder_<folder>;
#              the job gets the name: vision_common.smk V_NAMES)
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
    vexp="table2|sec54|fig10|table4|eqflops",
    setting=SETTING_RE,
    seed="[0-9]+",
    dataset="[A-Za-z0-9_]+",  # a label (lpa_core.registry.label)


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


V_FETCH = [d for d in VIS["datasets"] if d in _registry.IMAGE_DATASETS]  # an image folder is there already


rule fetch_data:  # not part of `all`: `snakemake fetch_data --cores 1` downloads the configured datasets now
    output:
        touch(expand(f"{V_DATA}/.fetched_{{dataset}}", dataset=V_FETCH)),
    params:
        datasets=",".join(V_FETCH),
        data_dir=lambda w, output: os.path.dirname(output[0]),
    log:
        "logs/fetch_data.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core fetch-data --datasets {params.datasets} --data-dir {params.data_dir} > {log} 2>&1"


rule vision_figures:
    input:
        stamp=REGEN,
        fresh=fresh_markers(T2_DIRS + FIG10_DIRS),
        run=[f"{d}/run.json" for d in T2_DIRS],
        fig10=[f"{d}/run.json" for d in FIG10_DIRS],
    output:
        fig4=expand(f"{FIGS}/fig4_layerwise_{{dataset}}.png", dataset=V_DATASETS),
        fig5=expand(f"{FIGS}/fig5_tsne_{{dataset}}_{{arch}}.png", dataset=V_DATASETS, arch=V_ARCHS),
        fig6=expand(f"{FIGS}/fig6_curves_{{dataset}}.png", dataset=V_DATASETS),
        fig10=f"{FIGS}/fig10_lr.png",
        inference=f"{FIGS}/fig_inference.png",
    params:
        dirs=_dirs,
        fig10=lambda w, input: [os.path.dirname(f) for f in input.fig10],
        outdir=lambda w, output: os.path.dirname(output.fig10),
    log:
        f"logs/{SCALE}/vision_figures.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core figures vision --runs {params.dirs} --lr-runs {params.fig10} --outdir {params.outdir} > {log} 2>&1"


VISION_TABLES = ["table2", "table3", "sec54", "inference", "fig6", *(["table4"] if IMAGENET else [])]
VISION_OUT = [*rules.vision_figures.output]


EQ_DIRS = [f"{RUNS}/eqflops/{d}/{a}/simultaneous/seed{s}" for d in VIS["datasets"] for a in V_ARCHS for s in VIS["seeds"]]


rule vision_equal_compute:  # `snakemake vision_equal_compute`: one run per Table 2 (dataset, arch, seed); their
    # history.csv (steps, flops, wall_s per epoch) beside Table 2's lpa and simultaneous runs' is time to target's input
    input:
        [f"{d}/run.json" for d in EQ_DIRS],
