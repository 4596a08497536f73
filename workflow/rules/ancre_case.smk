# ANCRé Figure 2 (Case Study 3.1): deep linear networks under residual topologies, with the 1/t^2-vs-linear
# convergence fits and the case-study claims judged from the curves (linear_case.CASE_CLAIMS). One job: every
# (depth, topology, seed) trains as one batch (lpa_core/linear_case.py), ~20 s on one CPU core at scale paper, a few seconds at scale quick.
#
#   config/config.yaml                     (every key optional; defaults in lpa_core/linear_case.py)
#   ancre_case:
#     seeds: [0, 1, 2, 3, 4]
#     pairs: shown                         # K = 4 pairs in panel (c): shown (9) or all (45, ~3x the time)
#   scales: {quick: {ancre_case: {seeds: [0, 1]}}}
#   resources: {ancre_case: {runtime: 10, mem_mb: 1000}}

ANCRE_CASE = config.get("ancre_case", {})
ANCRE_CASE_SEEDS = config["scales"].get(SCALE, {}).get("ancre_case", {}).get("seeds", ANCRE_CASE.get("seeds"))
ANCRE_CASE_ARGS = (  # the scale (module presets: paper, quick), its seeds, the panel-(c) pairs
    f"--scale {SCALE if SCALE in ('paper', 'quick') else 'paper'} --pairs {ANCRE_CASE.get('pairs', 'shown')}"
    + (f" --seeds {','.join(map(str, ANCRE_CASE_SEEDS))}" if ANCRE_CASE_SEEDS else "")
)


rule ancre_case:
    output:
        csv=f"{TABLES}/ancre_case.csv",
        summary=f"{TABLES}/ancre_case_summary.csv",
        claims=f"{TABLES}/ancre_case_claims.csv",
        run=f"{TABLES}/ancre_case.json",
        fig=f"{FIGS}/ancre_fig2.png",
    params:
        args=ANCRE_CASE_ARGS,
    log:
        f"logs/{SCALE}/ancre_case.log",
    threads: rule_threads("ancre_case")
    resources:
        **rule_resources("ancre_case", runtime=10, mem_mb=1000),
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core ancre-case {params.args} --out-csv {output.csv} --out-summary {output.summary} --out-claims {output.claims}"
        " --out-json {output.run} --out-fig {output.fig} > {log} 2>&1"
