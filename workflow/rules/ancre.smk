# ANCRé's learned residual topology on the residual MLP: one job per (paradigm, topology variant) of config
# `ancre.runs`, each training every surface x seed as one vectorised model; the table puts the ablations of the
# ANCRé paper (normalisation: its Table 4; connectivity: its Table 5) beside cascade, and the heatmap is its Fig 6.

ANCRE = config["ancre"]
ANCRE_DIRS = [f"{RUNS}/ancre/{ANCRE['arch']}/{p}/{v}" for p, vs in ANCRE["runs"].items() for v in vs]


rule train_topology:
    output:
        layerwise=f"{RUNS}/ancre/{{arch}}/{{paradigm}}/{{variant}}/layerwise.csv",
        coeffs=f"{RUNS}/ancre/{{arch}}/{{paradigm}}/{{variant}}/coeffs.csv",
        history=f"{RUNS}/ancre/{{arch}}/{{paradigm}}/{{variant}}/history.csv",
        summary=f"{RUNS}/ancre/{{arch}}/{{paradigm}}/{{variant}}/summary.csv",
        run=f"{RUNS}/ancre/{{arch}}/{{paradigm}}/{{variant}}/run.json",
    params:
        args=lambda w: train_args("ancre", w.arch, w.paradigm, label=f"ancre_{w.variant}", **TOPOLOGY_VARIANTS[w.variant])
        + (" --device cuda" if rule_gpus("train_topology") and "device" not in ANCRE.get("train", {}) else ""),
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
        + "python -m lpa_core train {params.args} --threads {threads} --out {params.out} --ckpt-dir {params.ckpt} > {log} 2>&1"


rule ancre_table:
    input:
        layerwise=[f"{d}/layerwise.csv" for d in ANCRE_DIRS],
        coeffs=[f"{d}/coeffs.csv" for d in ANCRE_DIRS],
        paper=config["paper_results"],
    output:
        csv=f"{config['results']}/tables/ancre.csv",
        md=f"{config['results']}/tables/ancre.md",
        heatmap=f"{config['figures']}/ancre_fig6_coeffs.png",
    params:
        dirs=lambda w, input: [os.path.dirname(f) for f in input.layerwise],
        learned=lambda w, input: [d for d in map(os.path.dirname, input.coeffs) if os.path.basename(d).startswith("ancre")],
    log:
        "logs/ancre_table.log",
    conda:
        "../../environment.yml"
    shell:
        "(python -m lpa_core ancre-table --runs {params.dirs} --paper {input.paper} --out-csv {output.csv} --out-md {output.md}"
        " && python -m lpa_core coeff-heatmap --runs {params.learned} --out {output.heatmap}) > {log} 2>&1"
