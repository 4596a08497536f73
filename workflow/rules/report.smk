# The reproduction report (lpa_core/html_report.py): results/report.html, one self-contained HTML file (tables with
# the paper's value beside ours, the papers' claims decided from the CSVs, every figure, the runs' provenance) from
# the outputs of the other rules. Include it last, after every rule file whose outputs it reads.
#
# Regenerate tables, figures and the report from cached runs (results/runs/ committed) without training:
#   snakemake --cores all --rerun-triggers mtime --forcerun table1 figures report
# (tests/test_regenerate.py checks that this schedules no training job in a fresh clone).


# ANCRé Case Study 3.1 (workflow/rules/ancre_case.smk), when that rule is part of the workflow: its CSV and JSON
# outputs are tables, its PNG a figure.
ANCRE_CASE_OUT = list(rules.ancre_case.output) if workflow.is_rule("ancre_case") else []


rule report:
    input:
        tables=[f for f in [*rules.table1.output, *ANCRE_CASE_OUT] if f.endswith((".csv", ".json"))],
        figures=[*rules.figures.output, *[f for f in ANCRE_CASE_OUT if f.endswith(".png")]],
        runs=[f"{d}/{name}" for d in SURF_DIRS for name in ("run.json", "layerwise.csv")],
        paper=config["paper_results"],
    output:
        html=f"{config['results']}/report.html",
    params:
        runs=SURF_DIRS,
    log:
        "logs/report.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m lpa_core report --tables {input.tables} --figures {input.figures} --runs {params.runs}"
        " --paper {input.paper} --out {output.html} > {log} 2>&1"
