# Issue #12, a fair verdict on the surfaces (config `fair:`, docs/fair.md). One tune job per (workload, protocol,
# paradigm): `python -m lpa_core tune` trains the paradigm's lr trials as one vectorised job, picks an lr per surface
# on the validation sample and trains the seeds at the picks (tune.json, trials/, final/). Protocols: epochs (tuned at
# the workload's epochs), steps and flops (the match paradigms at as many optimizer steps or FLOPs as the workload's
# tuned LPA: --match-dir .../epochs/lpa/final). Workloads: table1 (table1.train, this scale's keys and fair.train on
# top) and one per claims-map value that differs from it. `snakemake fair` builds the fair tables and figures
# (python -m lpa_core fair-report); the report and `all` take them as the track `fair`. Helpers: fair_common.smk.
if FAIR:

    rule tune_surfaces:
        input:
            lambda w: fresh_check(fair_dir(w.workload, w.protocol, w.paradigm), fair_args(w.workload, w.protocol, w.paradigm)),
            match=fair_match_inputs,
        output:
            tune=f"{RUNS}/fair/{{workload}}/{{protocol}}/{{paradigm}}/{TUNE_JSON}",
            trials=f"{RUNS}/fair/{{workload}}/{{protocol}}/{{paradigm}}/trials/run.json",
            final=f"{RUNS}/fair/{{workload}}/{{protocol}}/{{paradigm}}/final/run.json",
            fresh=touch(f"{RUNS}/fair/{{workload}}/{{protocol}}/{{paradigm}}/{FRESH}"),
        wildcard_constraints:
            workload="|".join(FAIR_WORKLOADS),
            protocol="|".join(PROTOCOLS),
        params:
            args=lambda w: fair_args(w.workload, w.protocol, w.paradigm),
            scale=SCALE,
            out=lambda w, output: os.path.dirname(output.tune),
            ckpt=lambda w: f"checkpoints/{SCALE}/fair/{w.workload}/{w.protocol}/{w.paradigm}",
        log:
            f"logs/{SCALE}/fair/{{workload}}/{{protocol}}/{{paradigm}}.log",
        threads: rule_threads("tune_surfaces")
        resources:
            **rule_resources("tune_surfaces"),
        conda:
            "../../environment.yml"
        shell:
            gpu_claim("tune_surfaces")
            + "python -m lpa_core tune {params.args} --scale {params.scale} --threads {threads} --out {params.out} --ckpt-dir {params.ckpt} --parent-pid $PPID > {log} 2>&1"

    rule fair:  # the target: the fair tables and figures from the tune folders and the paper protocol's Table 1 runs
        input:
            stamp=REGEN,
            fresh=fresh_markers(FAIR_DIRS + SURF_DIRS),
            tunes=[f"{d}/{TUNE_JSON}" for d in FAIR_DIRS],
            runs=[f"{d}/run.json" for d in SURF_DIRS],
            paper=config["paper_results"],
        output:
            tables=[f"{TABLES}/fair/{n}" for n in ("table1_fair.csv", "table1_fair.md", "verdicts.csv", "time_to_target.csv",
                                                     "time_to_target.md", "depth_error.csv", "depth_error.md", "claims_map.csv", "claims_map.md",
                                                     "protocol_search.csv")],
            figures=[f"{FIGS}/{n}" for n in ("claims_map.png", "protocol_search.png")],
        params:
            root=lambda w, input: input.runs[0].split("/table1/")[0],  # results/runs/<scale>: fair-report finds the folders
            tables=lambda w, output: os.path.dirname(output.tables[0]),
            figures=lambda w, output: os.path.dirname(output.figures[0]),
        log:
            f"logs/{SCALE}/fair.log",
        conda:
            "../../environment.yml"
        shell:
            "python -m lpa_core fair-report --runs {params.root} --paper {input.paper} --tables {params.tables}"
            " --figures {params.figures} > {log} 2>&1"
