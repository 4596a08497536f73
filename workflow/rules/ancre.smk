# ANCRé's learned residual topology on the residual MLP: one job per (paradigm, topology variant) of config
# `ancre.runs`, each training every surface x seed as one vectorised model; the table puts the ablations of the
# ANCRé paper (normalisation: its Table 4; connectivity: its Table 5) beside cascade, and the heatmap is its Fig 6.
# On the vision models (`ancre.vision`): one job per (dataset, arch, paradigm, variant, seed) on the vision track's
# recipe (vision_common.smk: vision.recipes, vision.train and the scale's overrides), `ancre.vision.train` on top:
#   {RUNS}/ancre/{dataset}/{arch}/{paradigm}/{variant}/seed{seed}/
# A cascade run equal to a Table 2 run (same recipe: ancre.vision.train sets only tau / n_embed, which cascade
# training does not read) is not trained again: the table reads the Table 2 run. The table's LM rows are the LM
# track's runs of lm.ancre_paradigms (cascade and lm.ancre_variants: lm.smk).
include: "ancre_common.smk"


rule train_topology_vision:
    input:
        lambda w: fresh_check(f"{RUNS}/ancre/{w.dataset}/{w.arch}/{w.paradigm}/{w.variant}/seed{w.seed}", ancre_vision_args(w)),
    output:
        **{f: f"{RUNS}/ancre/{{dataset}}/{{arch}}/{{paradigm}}/{{variant}}/seed{{seed}}/{f}.csv"
           for f in ("layerwise", "history", "summary", "coeffs")},
        run=f"{RUNS}/ancre/{{dataset}}/{{arch}}/{{paradigm}}/{{variant}}/seed{{seed}}/run.json",
        fresh=touch(f"{RUNS}/ancre/{{dataset}}/{{arch}}/{{paradigm}}/{{variant}}/seed{{seed}}/{FRESH}"),
    wildcard_constraints:
        dataset="[A-Za-z0-9_]+",
        seed="[0-9]+",
    params:
        args=ancre_vision_args,
        scale=SCALE,
        have_data=lambda w: data_check(w.dataset),
        data_dir=V_DATA,
        out=lambda w, output: os.path.dirname(output.run),
        ckpt=lambda w: f"checkpoints/{SCALE}/ancre/{w.dataset}/{w.arch}/{w.paradigm}/{w.variant}/seed{w.seed}",
    log:
        f"logs/{SCALE}/ancre/{{dataset}}/{{arch}}/{{paradigm}}/{{variant}}/seed{{seed}}.log",
    threads: rule_threads("train_vision")
    resources:
        **rule_resources("train_vision"),
    conda:
        "../../environment.yml"
    shell:
        gpu_claim("train_vision")
        + "(({params.have_data} || python -m lpa_core fetch-data --datasets {wildcards.dataset} --data-dir {params.data_dir})"
        " && python -m lpa_core train {params.args} --scale {params.scale} --threads {threads} --out {params.out} --ckpt-dir {params.ckpt} --parent-pid $PPID) > {log} 2>&1"


rule train_topology:
    input:
        lambda w: fresh_check(f"{RUNS}/ancre/{w.arch}/{w.paradigm}/{w.variant}", topology_args(w.arch, w.paradigm, w.variant)),
    output:
        layerwise=f"{RUNS}/ancre/{{arch}}/{{paradigm}}/{{variant}}/layerwise.csv",
        coeffs=f"{RUNS}/ancre/{{arch}}/{{paradigm}}/{{variant}}/coeffs.csv",
        history=f"{RUNS}/ancre/{{arch}}/{{paradigm}}/{{variant}}/history.csv",
        summary=f"{RUNS}/ancre/{{arch}}/{{paradigm}}/{{variant}}/summary.csv",
        run=f"{RUNS}/ancre/{{arch}}/{{paradigm}}/{{variant}}/run.json",
        fresh=touch(f"{RUNS}/ancre/{{arch}}/{{paradigm}}/{{variant}}/{FRESH}"),
    params:
        args=lambda w: topology_args(w.arch, w.paradigm, w.variant),
        scale=SCALE,
        out=lambda w, output: os.path.dirname(output.layerwise),
        ckpt=lambda w: f"checkpoints/{SCALE}/ancre/{w.arch}/{w.paradigm}/{w.variant}",
    log:
        f"logs/{SCALE}/ancre/{{arch}}/{{paradigm}}/{{variant}}.log",
    threads: rule_threads("train_topology")
    resources:
        **rule_resources("train_topology"),
    conda:
        "../../environment.yml"
    shell:
        gpu_claim("train_topology")
        + "python -m lpa_core train {params.args} --scale {params.scale} --threads {threads} --out {params.out} --ckpt-dir {params.ckpt} --parent-pid $PPID > {log} 2>&1"


rule ancre_heatmap:
    input:
        stamp=REGEN,
        fresh=fresh_markers(ANCRE_LEARNED),
        runs=[f"{d}/run.json" for d in ANCRE_LEARNED],
    output:
        heatmap=f"{FIGS}/ancre_fig6_coeffs.png",
    params:
        dirs=lambda w, input: [os.path.dirname(f) for f in input.runs],
    log:
        f"logs/{SCALE}/ancre_heatmap.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core coeff-heatmap --runs {params.dirs} --out {output.heatmap} > {log} 2>&1"
