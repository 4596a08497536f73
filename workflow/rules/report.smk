# The reproduction report (lpa_core/html_report.py): results/report.html, one self-contained HTML file (tables with
# the paper's value beside ours, the papers' claims decided from the CSVs, every figure, the runs' provenance) from
# the outputs of the other rules. Include it last, after every rule file whose outputs it reads.
#
# Regenerate tables, figures and the report from cached runs (results/runs/ committed) without training:
#   snakemake --profile profiles/regenerate      (= --rerun-triggers mtime --forcerun <the aggregation rules>)
# (tests/test_regenerate.py checks that this schedules no training job in a fresh clone).


# The tracks in this run: (outputs, run folders) of each whose rule file is included, and the run folders that
# take part (common.smk `cached`: all, or under cached_only the cached ones; ANCRé's were filtered where its table
# is defined). `all` asks for the outputs of the tracks taking part and the report; a track left out shows in the
# report as 'not yet run'.
TRACKS = {"table1": ([*rules.table1.output, *rules.figures.output], SURF_DIRS),
          "ancre": (_outputs_of("ancre_table"), ANCRE_DIRS if workflow.is_rule("train_topology") else []),
          "ancre_case": (_outputs_of("ancre_case"), None),
          "vision": (VISION_OUT if workflow.is_rule("train_vision") else [], VISION_DIRS if workflow.is_rule("train_vision") else []),
          "lm": (LM_OUT if workflow.is_rule("train_lm") else [], LM_DIRS if workflow.is_rule("train_lm") else [])}
_ONLY = config["scales"][SCALE].get("tracks", list(TRACKS))  # a scale may run only some tracks (scales.<name>.tracks)
TAKING_PART = {t: (outs, dirs if dirs is None or t == "ancre" else cached(t, dirs)) for t, (outs, dirs) in TRACKS.items()
               if outs and t in _ONLY}
TAKING_PART = {t: (outs, dirs) for t, (outs, dirs) in TAKING_PART.items() if dirs is None or dirs}
REPORT_OUT = [f for outs, _ in TAKING_PART.values() for f in outs]
REPORT_RUNS = [d for _, dirs in TAKING_PART.values() for d in dirs or []]

rule regenerate_stamp:  # forced by profiles/regenerate: every aggregation rule reads it (common.smk REGEN)
    output:
        touch(REGEN),


rule report:
    input:
        stamp=REGEN,
        fresh=fresh_markers(REPORT_RUNS),
        tables=[f for f in REPORT_OUT if f.endswith((".csv", ".json"))],
        figures=[f for f in REPORT_OUT if f.endswith(".png")],
        runs=[f"{d}/run.json" for d in REPORT_RUNS],
        layerwise=[f"{d}/layerwise.csv" for d in REPORT_RUNS],
        paper=config["paper_results"],
    output:
        html=REPORT,
    params:
        runs=REPORT_RUNS,
    log:
        f"logs/{SCALE}/report.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core report --tables {input.tables} --figures {input.figures} --runs {params.runs}"
        " --paper {input.paper} --out {output.html} > {log} 2>&1"
