# Config loading and validation, wildcard constraints and input functions shared by every rule.
import os

from snakemake.utils import validate

validate(config, workflow.source_path("../schemas/config.schema.yaml"))

SCALE = config["scale"]
if SCALE not in config["scales"]:
    raise ValueError(f"scale: unknown '{SCALE}' (valid: {', '.join(config['scales'])})")
RUNS = f"{config['results']}/runs/{SCALE}"
SURF = config["table1"]


def scaled(exp):
    """The experiment's training keys with this scale's overrides on top; seeds from the scale. An experiment
    whose config has `base: <exp>` starts from that experiment's training keys."""
    over = config["scales"][SCALE].get(exp, {})
    base = config[config[exp]["base"]]["train"] if "base" in config[exp] else {}
    return {**base, **config[exp].get("train", {}), **over.get("train", {})}, over.get("seeds", config[exp]["seeds"])


def train_args(exp, arch, paradigm, label=None, **extra):
    """`python -m lpa_core train` options for one vectorised job (all datasets x seeds of a paradigm)."""
    keys, seeds = scaled(exp)
    opts = {"exp": label or exp, "arch": arch, "paradigm": paradigm, "datasets": config[exp]["datasets"],
            "seeds": seeds, **keys, **extra}
    fmt = lambda v: ",".join(map(str, v)) if isinstance(v, list) else str(v)
    return " ".join(f"--{k} {fmt(v)}" for k, v in opts.items())


def run_dir(exp, arch, paradigm):
    return f"{RUNS}/{exp}/{arch}/{paradigm}"


# ANCRé topology variants: the name used in paths and tables -> lpa_core train keys (lpa_core/topology.py)
TOPOLOGY_VARIANTS = {
    "cascade": {"topology": "cascade"},
    "ancre": {"topology": "ancre", "normalisation": "ingoing"},
    "ancre_outgoing": {"topology": "ancre", "normalisation": "outgoing"},
    "ancre_none": {"topology": "ancre", "normalisation": "none"},
    "all_fixed": {"topology": "all_fixed"},
    "gains": {"topology": "gains"},
}


def _outputs_of(name):
    """Every output of rule `name`, or nothing when the rule is not part of the workflow (its file not included)."""
    return list(getattr(rules, name).output) if workflow.is_rule(name) else []


wildcard_constraints:
    paradigm="[a-z_]+",
    arch="[a-z0-9_]+",
    variant="|".join(TOPOLOGY_VARIANTS),
