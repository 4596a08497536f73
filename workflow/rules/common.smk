# Config loading and validation, wildcard constraints and input functions shared by every rule, and which cached
# run folders stand for the runs this config asks for (check_run: fresh, missing, stale or damaged).
import json
import os
import shlex
import sys
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

import yaml

from lpa_core import registry as _registry, runs as _runs, tune as _tune
from lpa_core.config import TrainConfig


def _typed(v):
    """A --config value with its type: Snakemake reads a nested value (`--config 'table1={seeds: [0]}'`) as
    strings all the way down; numbers and booleans are read back here, before validation."""
    if isinstance(v, dict):
        return {k: _typed(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_typed(x) for x in v]
    if not isinstance(v, str):
        return v
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None, "~": None}.get(v.lower(), v)


def _retype(cfg, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            _retype(cfg[k], v)
        else:
            cfg[k] = _typed(v)


_retype(config, workflow.config_settings.overwrite_config)
validate(config, workflow.source_path("../schemas/config.schema.yaml"))
# Names: the config's plugins register theirs (lpa_core.registry), then every name the schema marks x-registry is
# checked against the registry: one line naming the key, before any job. Every job (python -m lpa_core) imports
# them too, from the environment it inherits (LPA_PLUGINS, lpa_core.cli).
try:
    _registry.load_plugins(config.get("plugins", []))
    _registry.check_names(config, yaml.safe_load(open(workflow.source_path("../schemas/config.schema.yaml"))))
except ValueError as e:
    raise WorkflowError(str(e)) from None
os.environ[_registry.PLUGINS_ENV] = ",".join(config.get("plugins", []))

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
    return options(opts)


def options(opts):
    """Command-line options `--key value ...` of a mapping; a list is comma-separated, None left out."""
    fmt = lambda v: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    return " ".join(f"--{k} {fmt(v)}" for k, v in opts.items() if v is not None)


def run_dir(exp, arch, paradigm):
    return f"{RUNS}/{exp}/{arch}/{paradigm}"


def surface_args(arch, paradigm):
    """Options of a Table 1 job (rule train_surfaces)."""
    return train_args("table1", arch, paradigm) + (
        " --device cuda" if rule_gpus("train_surfaces") and "device" not in config["table1"]["train"] else "")


def topology_args(arch, paradigm, variant):
    """Options of an ANCRé surface job (rule train_topology)."""
    return train_args("ancre", arch, paradigm, label=f"ancre_{variant}", **TOPOLOGY_VARIANTS[variant]) + (
        " --device cuda" if rule_gpus("train_topology") and "device" not in config["ancre"].get("train", {}) else "")


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


# Cached runs. A run folder stands for the run the workflow asks of it only when its run.json verifies (every file
# matches the manifest: lpa_core.runs.verify_run) and records the config the training rule would pass now (same
# options, read by the same parser as `lpa_core train`; runs.check_run). Cached runs carry no Snakemake metadata,
# so Snakemake cannot see this by itself: every training rule has one more output, FRESH, an empty marker that
# exists exactly when the folder is fresh. At parse time (run_state) the marker of a stale or damaged folder is
# removed (the folder is named on stderr), so its training job has a missing output and `snakemake` re-trains it,
# and a dry run says so; the marker of a fresh folder that lacks one (a fresh clone, a migrated run) is made.
# Snakemake 9 does not re-run a job whose outputs are up to date for a missing input that another rule makes
# (the marker), so a stale or damaged run also touches REGEN, the stamp every aggregation takes; those rules
# run again, and with them the training jobs whose marker is missing.
# Nothing else is touched: put the config back and the marker comes back. Under cached_only (profiles/regenerate,
# which never trains) a stale, damaged or missing run is left out instead, named with its reason.
FRESH = ".fresh"
_STATE = {}


def equal_flops_epochs(opts):
    """lpa_core.cost.equal_flops_epochs of the run of these options against LPA (analytic; imports torch, so only
    an eqflops job's options call it: the vision and LM tracks' eqflops runs)."""
    from lpa_core.cost import equal_flops_epochs as epochs

    return epochs(TrainConfig.from_dict(TrainConfig.parse_options(shlex.split(" ".join(f"--{k} {v}" for k, v in opts.items())))))


def args_of(d):
    """The `lpa_core train` options of run folder d, from its path, by the function its training rule uses."""
    parts = os.path.relpath(d, RUNS).split("/")
    w = lambda **kw: SimpleNamespace(**kw, seed=parts[-1][len("seed"):])
    if parts[0] == "table1" and len(parts) == 3:
        return surface_args(parts[1], parts[2])
    if parts[0] == "fair" and len(parts) == 4:
        return fair_args(*parts[1:])
    if parts[0] == "ancre" and len(parts) == 4:
        return topology_args(*parts[1:])
    if parts[0] == "ancre" and len(parts) == 6:
        return ancre_vision_args(w(dataset=parts[1], arch=parts[2], paradigm=parts[3], variant=parts[4]))
    if parts[0] == "lm" and len(parts) == 5:
        return lm_args(w(arch=parts[1], paradigm=parts[2], variant=parts[3]))
    if len(parts) == 5:
        return vision_args(w(vexp=parts[0], dataset=parts[1], arch=parts[2], setting=parts[3]))
    raise ValueError(f"{d}: not a run folder of this workflow")


def run_state(d, args=None):
    """None when run folder d is fresh, else why not ('missing', 'stale: ...', 'damaged: ...'); keeps d/FRESH in
    step (see above; only the main Snakemake process touches it, not a cluster job re-reading the workflow)."""
    if d not in _STATE:
        tune = is_tune_dir(d)
        args = args or args_of(d)
        why = _STATE[d] = tune_check(d, args) if tune else _runs.check_run(d, _asked(shlex.split(args)), SCALE)
        marker = os.path.join(d, FRESH)
        if workflow.is_main_process and why is None and not os.path.exists(marker):
            open(marker, "a").close()
            stamp = os.stat(os.path.join(d, TUNE_JSON if tune else _runs.RUN_JSON)).st_mtime_ns
            os.utime(marker, ns=(stamp, stamp))  # as old as the run, so it makes nothing downstream look newer
        elif workflow.is_main_process and why is not None and os.path.exists(marker):
            os.remove(marker)
        left = why == "missing" and os.path.isdir(d)  # a run begun or deleted in part, not one never started
        if why is not None and (why != "missing" or left) and not CACHED_ONLY:
            print(f"run {d} is {why}; it is trained again", file=sys.stderr)
            if workflow.is_main_process:  # see above: the rules reading runs must run for Snakemake to see FRESH missing
                os.makedirs(os.path.dirname(REGEN), exist_ok=True)
                open(REGEN, "a").close()
                os.utime(REGEN)
    return _STATE[d]


def _asked(tokens):
    """The resolved config that `lpa_core train` options ask for (the parser the train command uses)."""
    return TrainConfig.resolved(TrainConfig.parse_options(tokens))


# Tune folders (`python -m lpa_core tune`, workflow/rules/fair.smk): DIR/tune.json, written last, records the
# request (tune options and train options as given: lpa_core.tune.request), DIR/trials and DIR/final are run
# folders. The folder is fresh when its request is the one the rule's options make now (the same parser: the tune
# options equal, the train options the same resolved config) and both run folders verify, at this scale; the FRESH
# marker, the stderr line and cached_only then work as for a run folder (run_state).
TUNE_JSON = _tune.TUNE_JSON


def is_tune_dir(d):
    return os.path.relpath(d, RUNS).partition(os.sep)[0] == "fair"


def tune_check(d, args):
    """Why tune folder d cannot stand for the tune job asked of it (`args`: its options), or None: 'missing',
    'damaged: ...' (tune.json unreadable, trials/ or final/ not verifying), 'stale: <option old -> new, ...>'."""
    path = os.path.join(d, TUNE_JSON)
    if not os.path.isfile(path):
        return "missing"
    try:
        done = [_runs.verify_run(os.path.join(d, sub)) for sub in ("trials", "final")]
        with open(path) as f:
            had = _tune.recorded(json.load(f)["request"])
        had_train = TrainConfig.resolved(had["train"])
    except _runs.RunError as e:
        return f"damaged: {e}"
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return f"damaged: {path}: not a tune record ({str(e).splitlines()[0] if str(e) else type(e).__name__}); re-tune or delete {d}"
    asked = _tune.recorded(_tune.request(["--out", d, *shlex.split(args)])[1])
    norm = lambda k, v: os.path.normpath(v) if k == "match_dir" and v else v
    changes = [f"scale {done[-1].get('scale')} -> {SCALE}"] if done[-1].get("scale") != SCALE else []
    changes += [f"{k} {had.get(k)} -> {v}" for k, v in asked.items() if k != "train" and norm(k, had.get(k)) != norm(k, v)]
    changes += _runs.config_changes(had_train, TrainConfig.resolved(asked["train"]))
    return f"stale: {'; '.join(changes)}" if changes else None


def fresh_markers(dirs):
    """The FRESH markers of run folders: every rule that reads runs takes them among its inputs (`fresh=`), so a
    stale or damaged run is a missing input, and its training job runs first."""
    return [os.path.join(d, FRESH) for d in dirs]


def fresh_check(d, args):
    """Input function of a training rule: checks its run folder (run_state), needs no input file. Under cached_only
    (profiles/regenerate) a training job is an error that names the run: regenerating never trains."""
    why = run_state(d, args)
    if CACHED_ONLY and why:
        raise WorkflowError(f"cached_only: run {d} is {why}; profiles/regenerate never trains (drop the target that "
                            f"needs it, or train it with plain snakemake)")
    return []


def cached(track, dirs, partial=False):
    """The run folders of `track` that take part in `all` and the report: all of `dirs` (each checked, run_state:
    a stale or damaged one is re-trained), unless cached_only is set (profiles/regenerate sets it), so that
    regenerating never schedules training. Then a track takes part only when every run folder is fresh, or, with
    partial=True (a table whose rows stand alone, as the ANCRé table's), with the folders that are. Every stale or
    damaged run left out is named on stderr with its reason, missing ones counted; the report marks the claims it
    would decide 'not yet run'."""
    states = {d: run_state(d) for d in dirs}
    if not CACHED_ONLY:
        return list(dirs)
    have = [d for d in dirs if states[d] is None]
    if len(have) < len(dirs):
        what = "its other runs" if partial and have else "the track"
        missing = [d for d in dirs if states[d] == "missing"]
        for d in dirs:
            if states[d] not in (None, "missing"):
                print(f"cached_only: {track}: left out {d}: {states[d]}", file=sys.stderr)
        if missing:
            print(f"cached_only: {track}: {len(missing)} of {len(dirs)} runs are not in {RUNS} "
                  f"(e.g. {sorted(missing)[0]}); left out", file=sys.stderr)
        print(f"cached_only: {track}: {len(dirs) - len(have)} of {len(dirs)} runs left out; left out: {what}",
              file=sys.stderr)
    return have if partial or len(have) == len(dirs) else []


wildcard_constraints:
    paradigm="|".join(_registry.PARADIGMS),  # every registered name, a plugin's too (names are identifiers)
    arch="[a-z0-9_]+",
    variant="|".join(TOPOLOGY_VARIANTS),
