# The language-model track (LPA appendix I and its second version's Qwen figures; ANCRé Sec 5.1 at small scale):
# a transformers decoder (lpa_core/lm.py) on text (lpa_core/text.py), one job per (paradigm, topology, seed), then
# Table 5 and two figures from the runs' CSVs (lpa_core/report/).
#
#   {RUNS}/lm/{arch}/{paradigm}/{variant}/seed{seed}/   layerwise, history, summary CSV, coeffs.csv, samples.txt, run.json
#     variant   cascade for every lm.paradigms entry; each of lm.ancre_variants (default ancre_add, the authors' wiring
#               and the LM default, and ancre, the paper's; ingoing, block level, tau from lm.train) for lm.ancre_paradigms;
#               eqflops: Simultaneous under the cascade for LPA's analytic FLOPs (lm.eqflops; issue 12's equal compute,
#               `snakemake lm_equal_compute`; read by the lm_fair table, not by Table 5)
#   training keys: lm.train, then the scale's lm.train; arch, corpus, seeds, paradigm lists: the scale's lm, else lm.
# The corpus (lm.corpus: pydoc offline, hf:NAME[:CONFIG], or local text files) and its BPE tokenizer (cached in
# lm.data_dir/lm) are read by every job; a tokenizer trained by two jobs at once is the same file (atomic write).

include: "lm_common.smk"


rule train_lm:
    input:
        lambda w: fresh_check(f"{RUNS}/lm/{w.arch}/{w.paradigm}/{w.variant}/seed{w.seed}", lm_args(w)),
    output:
        **{f: f"{RUNS}/lm/{{arch}}/{{paradigm}}/{{variant}}/seed{{seed}}/{f}.csv" for f in ["layerwise", "history", "summary", "coeffs"]},
        samples=f"{RUNS}/lm/{{arch}}/{{paradigm}}/{{variant}}/seed{{seed}}/samples.txt",
        run=f"{RUNS}/lm/{{arch}}/{{paradigm}}/{{variant}}/seed{{seed}}/run.json",
        fresh=touch(f"{RUNS}/lm/{{arch}}/{{paradigm}}/{{variant}}/seed{{seed}}/{FRESH}"),
    wildcard_constraints:
        variant="|".join([*TOPOLOGY_VARIANTS, "eqflops"]),
    params:
        args=lm_args,
        scale=SCALE,
        out=lambda w, output: os.path.dirname(output.run),
        ckpt=lambda w: f"checkpoints/{SCALE}/lm/{w.arch}/{w.paradigm}/{w.variant}/seed{w.seed}",
    log:
        f"logs/{SCALE}/lm/{{arch}}/{{paradigm}}/{{variant}}/seed{{seed}}.log",
    threads: rule_threads("train_lm")
    resources:
        **rule_resources("train_lm"),
    conda:
        "../../environment.yml"
    shell:
        gpu_claim("train_lm")
        + "python -m lpa_core train {params.args} --scale {params.scale} --threads {threads} --out {params.out} --ckpt-dir {params.ckpt} --parent-pid $PPID > {log} 2>&1"


rule lm_samples:
    input:
        stamp=REGEN,
        runs=[f"{d}/run.json" for d in LM_DIRS],
    output:
        samples=f"{TABLES}/table5_samples.txt",
    params:
        dirs=lambda w, input: [os.path.dirname(f) for f in input.runs],
    log:
        f"logs/{SCALE}/lm_samples.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core samples --runs {params.dirs} --out {output.samples} > {log} 2>&1"


rule lm_figures:
    input:
        stamp=REGEN,
        fresh=fresh_markers(LM_DIRS),
        run=[f"{d}/run.json" for d in LM_DIRS],
    output:
        layerwise=f"{FIGS}/fig_lm_layerwise.png",
        curves=f"{FIGS}/fig_lm_ancre_curves.png",
    params:
        dirs=lambda w, input: [os.path.dirname(f) for f in input.run],
        outdir=lambda w, output: os.path.dirname(output.layerwise),
    log:
        f"logs/{SCALE}/lm_figures.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core figures lm --runs {params.dirs} --outdir {params.outdir} > {log} 2>&1"


LM_OUT = [*rules.lm_samples.output, *rules.lm_figures.output]


rule lm_equal_compute:  # `snakemake lm_equal_compute`: the eqflops runs alone (in `all` with lm.eqflops)
    input:
        [f"{d}/run.json" for d in LM_EQ_ALL],
