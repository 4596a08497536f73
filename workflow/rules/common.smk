# Config loading and validation, wildcard constraints and input functions shared by every rule.
import os
import sys

from snakemake.utils import validate

validate(config, workflow.source_path("../schemas/config.schema.yaml"))

SCALE = config["scale"]
if SCALE not in config["scales"]:
    raise ValueError(f"scale: unknown '{SCALE}' (valid: {', '.join(config['scales'])})")
RUNS = f"{config['results']}/runs/{SCALE}"
# Tables, figures and the report of this scale: the paper scale writes results/tables, figures/ and
# results/report.html; any other scale a folder of its own (results/tables/quick, figures/quick,
# results/report_quick.html), so a quick run never overwrites the paper-scale outputs that ship.
_PAPER = SCALE == "paper"
TABLES = os.path.join(config["results"], "tables", *([] if _PAPER else [SCALE]))
FIGS = os.path.join(config["figures"], *([] if _PAPER else [SCALE]))
REPORT = os.path.join(config["results"], "report.html" if _PAPER else f"report_{SCALE}.html")
CACHED_ONLY = config.get("cached_only", False)
# A stamp that the aggregation jobs all read (cheap, made once) and that profiles/regenerate forces. With
# `--rerun-triggers mtime` that rebuilds every table, figure and the report of the tracks taking part, and nothing
# else (forcing the aggregation jobs by name would make each a target, and pull in the training of tracks that
# are not cached). A new aggregation job takes `stamp=REGEN` among its inputs.
REGEN = f"logs/{SCALE}/.regenerate"

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


# ANCRé topology variants: the name used in paths and tables -> lpa_core train keys (lpa_core/topology.py); every
# learned or fixed mix in the paper's wiring (replace) and, suffixed _add, in the authors' (add)
TOPOLOGY_VARIANTS = {
    "ancre": {"topology": "ancre", "normalisation": "ingoing"},
    "ancre_outgoing": {"topology": "ancre", "normalisation": "outgoing"},
    "ancre_none": {"topology": "ancre", "normalisation": "none"},
    "all_fixed": {"topology": "all_fixed"},
    "gains": {"topology": "gains"},
}
TOPOLOGY_VARIANTS = {"cascade": {"topology": "cascade"},
                     **{v: {**k, "wiring": "replace"} for v, k in TOPOLOGY_VARIANTS.items()},
                     **{f"{v}_add": {**k, "wiring": "add"} for v, k in TOPOLOGY_VARIANTS.items()}}


def _outputs_of(name):
    """Every output of rule `name`, or nothing when the rule is not part of the workflow (its file not included)."""
    return list(getattr(rules, name).output) if workflow.is_rule(name) else []


def cached(track, dirs, partial=False):
    """The run folders of `track` that take part in `all` and the report: all of `dirs`, unless cached_only is set
    (profiles/regenerate sets it), so that regenerating never schedules training. Then a track takes part only
    when every run folder already holds run.json, or, with partial=True (a table whose rows stand alone, as the
    ANCRé table's), with the folders that do. A track or run left out says so on stderr; the report marks the
    claims it would decide 'not yet run'."""
    if not CACHED_ONLY:
        return list(dirs)
    have = [d for d in dirs if os.path.exists(f"{d}/run.json")]
    if len(have) < len(dirs):
        what = "its uncached runs" if partial and have else "the track"
        print(f"cached_only: {track}: {len(dirs) - len(have)} of {len(dirs)} runs are not in {RUNS} "
              f"(e.g. {sorted(set(dirs) - set(have))[0]}); left out: {what}", file=sys.stderr)
    return have if partial or len(have) == len(dirs) else []


wildcard_constraints:
    paradigm="[a-z_]+",
    arch="[a-z0-9_]+",
    variant="|".join(TOPOLOGY_VARIANTS),
