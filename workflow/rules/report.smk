# The reproduction report (lpa_core/html_report.py): results/report.html, one self-contained HTML file (tables with
# the paper's value beside ours, the papers' claims decided from the CSVs, every figure, the runs' provenance) from
# the outputs of the other rules. Include it last, after every rule file whose outputs it reads.
#
# Regenerate tables, figures and the report from cached runs (results/runs/ committed) without training:
#   snakemake --profile profiles/regenerate      (= --rerun-triggers mtime --forcerun <the aggregation rules>)
# (tests/test_regenerate.py checks that this schedules no training job in a fresh clone).


# Rules whose outputs are tables (CSV, JSON sidecars) and figures (PNG) of the report, beside table1 and figures.
REPORT_OUT = [*rules.table1.output, *rules.figures.output, *_outputs_of("ancre_case"), *_outputs_of("ancre_table"),
              *(VISION_OUT if workflow.is_rule("train_vision") else [])]
REPORT_RUNS = [*SURF_DIRS, *(ANCRE_DIRS if workflow.is_rule("train_topology") else []),
               *(VISION_DIRS if workflow.is_rule("train_vision") else [])]


rule report:
    input:
        tables=[f for f in REPORT_OUT if f.endswith((".csv", ".json"))],
        figures=[f for f in REPORT_OUT if f.endswith(".png")],
        runs=[f"{d}/run.json" for d in REPORT_RUNS],
        layerwise=[f"{d}/layerwise.csv" for d in REPORT_RUNS],
        paper=config["paper_results"],
    output:
        html=f"{config['results']}/report.html",
    params:
        runs=REPORT_RUNS,
    log:
        "logs/report.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core report --tables {input.tables} --figures {input.figures} --runs {params.runs}"
        " --paper {input.paper} --out {output.html} > {log} 2>&1"
