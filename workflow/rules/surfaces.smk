# Table 1 and Figures 2, 3, 8: the residual MLP on the synthetic surfaces. One job per paradigm trains every
# surface x seed at once as one vectorised model (lpa_core/models.py: run-stacked weights).


rule train_surfaces:
    input:
        lambda w: fresh_check(run_dir("table1", w.arch, w.paradigm), surface_args(w.arch, w.paradigm)),
    output:
        layerwise=f"{RUNS}/table1/{{arch}}/{{paradigm}}/layerwise.csv",
        history=f"{RUNS}/table1/{{arch}}/{{paradigm}}/history.csv",
        summary=f"{RUNS}/table1/{{arch}}/{{paradigm}}/summary.csv",
        grid=f"{RUNS}/table1/{{arch}}/{{paradigm}}/grid.npz",
        run=f"{RUNS}/table1/{{arch}}/{{paradigm}}/run.json",
        fresh=touch(f"{RUNS}/table1/{{arch}}/{{paradigm}}/{FRESH}"),
    params:
        args=lambda w: surface_args(w.arch, w.paradigm),
        scale=SCALE,
        out=lambda w, output: os.path.dirname(output.layerwise),
        ckpt=lambda w: f"checkpoints/{SCALE}/table1/{w.arch}/{w.paradigm}",
    log:
        f"logs/{SCALE}/table1/{{arch}}/{{paradigm}}.log",
    threads: rule_threads("train_surfaces")
    resources:
        **rule_resources("train_surfaces"),
    conda:
        "../../environment.yml"
    shell:
        gpu_claim("train_surfaces")
        + "python -m lpa_core train {params.args} --scale {params.scale} --threads {threads} --out {params.out} --ckpt-dir {params.ckpt} --parent-pid $PPID > {log} 2>&1"


SURF_DIRS = [run_dir("table1", SURF["arch"], p) for p in SURF["paradigms"]]


rule figures:
    input:
        stamp=REGEN,
        fresh=fresh_markers(SURF_DIRS),
        runs=[f"{d}/run.json" for d in SURF_DIRS],
    output:
        fig2=f"{FIGS}/fig2_surfaces.png",
        fig3=expand(f"{FIGS}/fig3_layerwise_{{surface}}.png", surface=[_registry.label(d) for d in SURF["datasets"]]),
        history=f"{FIGS}/fig_history_surfaces.png",
    params:
        dirs=lambda w, input: [os.path.dirname(f) for f in input.runs],
        outdir=lambda w, output: os.path.dirname(output.fig2),
    log:
        f"logs/{SCALE}/figures.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core figures surfaces --runs {params.dirs} --outdir {params.outdir} > {log} 2>&1"
