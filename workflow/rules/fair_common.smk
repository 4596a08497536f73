# The fair track's config, workloads, jobs and tune options (workflow/rules/fair.smk; common.smk args_of reads
# fair_args for a tune folder's staleness). Include after common.smk and resources.smk.
import math

PROTOCOLS = ("epochs", "steps", "flops")


def fair_config():
    """config fair with this scale's scales.<scale>.fair merged per key (fair.train and fair.map one level deeper)."""
    base, over = config.get("fair"), config["scales"][SCALE].get("fair", {})
    if base is None:
        return None
    merged = {**base, **over}
    for k in ("train", "map"):
        merged[k] = {**base.get(k, {}), **over.get(k, {})}
    return merged


def variant_name(key, value):
    """The workload of a claims-map value: domain_pi, epochs_500, width_32 (a non-integer x.y as x_y)."""
    label = "pi" if value == "pi" else str(int(value)) if float(value).is_integer() else str(value).replace(".", "_")
    return f"{key}_{label}"


def variant_keys(key, value):
    """TrainConfig keys of a claims-map value (domain h: [-h, h])."""
    if key == "domain":
        h = math.pi if value == "pi" else float(value)
        return {"domain": [-h, h]}
    return {key: value}


def fair_workloads(F):
    """workload -> (train keys, paradigms, seeds, protocols). The table1 workload also serves the map's paradigms
    and protocols (the map's values equal to it are it), so it runs the union of both."""
    base = {**scaled("table1")[0], **F["train"]}
    m = F["map"]
    out = {"table1": (base, list(dict.fromkeys(F["paradigms"] + m.get("paradigms", []))), F["seeds"],
                      ["epochs", *dict.fromkeys(F["match"] + m.get("match", []))])}
    for key, values in m.get("variants", {}).items():
        for v in values:
            keys = {**base, **variant_keys(key, v)}
            if keys != base:
                out[variant_name(key, v)] = (keys, m.get("paradigms", F["paradigms"]), m.get("seeds", F["seeds"]),
                                             ["epochs", *m.get("match", [])])
    for name, (_, paradigms, _, protocols) in out.items():
        if len(protocols) > 1 and "lpa" not in paradigms:
            raise WorkflowError(f"fair.{'paradigms' if name == 'table1' else 'map.paradigms'}: needs lpa for the "
                                f"equal-compute protocols ({', '.join(protocols[1:])}): they match tuned LPA")
    return out


FAIR = fair_config()
FAIR_WORKLOADS = fair_workloads(FAIR) if FAIR else {}


def fair_jobs():
    """(workload, protocol, paradigm) of every tune job: equal epochs for each paradigm of the workload, the
    equal-compute protocols for its match paradigms (never LPA, the reference)."""
    return [(w, p, par) for w, (_, paradigms, _, protocols) in FAIR_WORKLOADS.items() for p in protocols
            for par in paradigms if p == "epochs" or (par in FAIR["match_paradigms"] and par != "lpa")]


def fair_dir(workload, protocol, paradigm):
    return f"{RUNS}/fair/{workload}/{protocol}/{paradigm}"


def fair_args(workload, protocol, paradigm):
    """`python -m lpa_core tune` options of one job (without --out and the execution options)."""
    keys, _, seeds, _ = FAIR_WORKLOADS[workload]
    match = {} if protocol == "epochs" else {"match_dir": f"{fair_dir(workload, 'epochs', 'lpa')}/final", "match": protocol}
    history = {} if workload == "table1" else {"history": FAIR["map"].get("history", "all")}
    tune = {"trials": FAIR["trials"], "span": FAIR["span"], "points": FAIR["points"], "tune_seed": FAIR["tune_seed"], **match, **history}
    tune = options({k.replace("_", "-"): v for k, v in tune.items()})  # the tune command's own options: --tune-seed
    gpu = " --device cuda" if rule_gpus("tune_surfaces") and "device" not in keys else ""
    return f"{tune} {train_args('table1', SURF['arch'], paradigm, label=f'fair_{workload}_{protocol}', **keys, seeds=seeds)}{gpu}"


def fair_match_inputs(w):
    """The tuned LPA run an equal-compute job matches (and its FRESH marker): none at equal epochs."""
    if w.protocol == "epochs":
        return []
    d = fair_dir(w.workload, "epochs", "lpa")
    return [f"{d}/final/{_runs.RUN_JSON}", f"{d}/{FRESH}"]


# regenerating (cached_only): the cached tune folders only; fair-report names every protocol it leaves out
FAIR_DIRS = cached("fair", [fair_dir(*j) for j in fair_jobs()], partial=True)
