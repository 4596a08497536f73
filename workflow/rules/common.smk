# Config loading and validation, wildcard constraints and input functions shared by every rule.
import os

from snakemake.utils import validate

validate(config, workflow.source_path("../schemas/config.schema.yaml"))

SCALE = config["scale"]
if SCALE not in config["scales"]:
    raise ValueError(f"scale: unknown '{SCALE}' (valid: {', '.join(config['scales'])})")
RUNS = f"{config['results']}/runs/{SCALE}"
SURF = config["table1"]


wildcard_constraints:
    paradigm="|".join(SURF["paradigms"]),
    arch="[a-z0-9_]+",


def scaled(exp):
    """The experiment's training keys with this scale's overrides on top; seeds from the scale."""
    over = config["scales"][SCALE].get(exp, {})
    return {**config[exp]["train"], **over.get("train", {})}, over.get("seeds", config[exp]["seeds"])


def train_args(exp, arch, paradigm):
    """`python -m lpa_core train` options for one vectorised job (all datasets x seeds of a paradigm)."""
    keys, seeds = scaled(exp)
    opts = {"exp": exp, "arch": arch, "paradigm": paradigm, "datasets": config[exp]["datasets"], "seeds": seeds, **keys}
    fmt = lambda v: ",".join(map(str, v)) if isinstance(v, list) else str(v)
    return " ".join(f"--{k} {fmt(v)}" for k, v in opts.items())


def run_dir(exp, arch, paradigm):
    return f"{RUNS}/{exp}/{arch}/{paradigm}"
