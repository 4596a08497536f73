# The reproduction report (lpa_core/report/html.py): results/report.html, one self-contained HTML file (tables with
# the paper's value beside ours, the papers' claims decided from the CSVs, every figure, the runs' provenance) from
# the outputs of the other rules. Include it last, after every rule file whose outputs it reads.
#
# Regenerate tables, figures and the report from cached runs (results/runs/ committed) without training:
#   snakemake --profile profiles/regenerate      (= --rerun-triggers mtime --forcerun <the aggregation rules>)
# (tests/test_regenerate.py checks that this schedules no training job in a fresh clone).


# Tables: one rule over the table wildcard; TABLE_RUNS names each table's run folders (lpa_core.report.tables.TABLES
# names its build). A new table is one entry here and one there.
TABLE_RUNS = {"table1": SURF_DIRS, "ancre": ANCRE_DIRS + ancre_lm_dirs(None), "table2": T2_DIRS, "table3": T3_DIRS, "sec54": SEC54_DIRS,
              "inference": T2_DIRS, "fig6": T2_DIRS, "table4": T4_DIRS, "table5": LM_DIRS,
              "vision_fair": T2_DIRS + EQ_DIRS, "lm_fair": LM_DIRS + LM_EQ_DIRS}
tables = lambda *names: [f"{TABLES}/{n}.{ext}" for n in names for ext in ("csv", "md")]


# The tracks in this run: (outputs, run folders) of each whose rule file is included, and the run folders that
# take part (common.smk `cached`: all, or under cached_only the cached ones; ANCRé's were filtered where its table
# is defined). `all` asks for the outputs of the tracks taking part and the report; a track left out shows in the
# report as 'not yet run'.
TRACKS = {"table1": ([*tables("table1"), *rules.figures.output], SURF_DIRS),
          "ancre": ([*tables("ancre"), *_outputs_of("ancre_heatmap")] if workflow.is_rule("train_topology") else [], ANCRE_DIRS),
          "ancre_case": (_outputs_of("ancre_case"), None),
          "vision": ([*tables(*VISION_TABLES), *VISION_OUT] if workflow.is_rule("train_vision") else [], VISION_DIRS),
          "lm": ([*tables("table5", "lm_fair"), *LM_OUT] if workflow.is_rule("train_lm") else [], LM_DIRS + LM_EQ_DIRS),
          "fair": (_outputs_of("fair"), FAIR_DIRS + SURF_DIRS)}
_ONLY = config["scales"][SCALE].get("tracks", list(TRACKS))  # a scale may run only some tracks (scales.<name>.tracks)
TAKING_PART = {t: (outs, dirs if dirs is None or t == "ancre" else cached(t, dirs)) for t, (outs, dirs) in TRACKS.items()
               if outs and t in _ONLY}
TAKING_PART = {t: (outs, dirs) for t, (outs, dirs) in TAKING_PART.items() if dirs is None or dirs}
REPORT_OUT = [f for outs, _ in TAKING_PART.values() for f in outs]
# the report's run folders (provenance): the fair track's are tune folders, read by its own rule (fair.smk)
REPORT_RUNS = list(dict.fromkeys(d for t, (_, dirs) in TAKING_PART.items() if t != "fair" for d in dirs or []))


rule table:  # any table of TABLE_RUNS: python -m lpa_core table <name> (lpa_core/report/tables.py)
    input:
        stamp=REGEN,
        fresh=lambda w: fresh_markers(TABLE_RUNS[w.table]),
        runs=lambda w: [f"{d}/run.json" for d in TABLE_RUNS[w.table]],
        paper=config["paper_results"],
    output:
        csv=f"{TABLES}/{{table}}.csv",
        md=f"{TABLES}/{{table}}.md",
    wildcard_constraints:
        table="|".join(TABLE_RUNS),
    params:
        dirs=lambda w: TABLE_RUNS[w.table],
        arch_map=f" --arch-map {ARCH_MAP}" if ARCH_MAP else "",
    log:
        f"logs/{SCALE}/{{table}}.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core table {wildcards.table} --runs {params.dirs} --paper {input.paper}{params.arch_map}"
        " --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"


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
