# The ANCRé experiment's configuration and run folders (used by ancre.smk): the surface jobs of `ancre.runs` and
# the vision jobs of `ancre.vision`, which take the vision track's recipe and helpers (vision_common.smk).


from types import SimpleNamespace

ANCRE = config["ancre"]
ANCRE_DIRS = [f"{RUNS}/ancre/{ANCRE['arch']}/{p}/{v}" for p, vs in ANCRE["runs"].items() for v in vs]
AV = {**ANCRE.get("vision", {}), **config["scales"][SCALE].get("ancre", {}).get("vision", {})}  # a scale replaces keys whole
AV_TRAIN = AV.get("train", {})


def ancre_vision_dir(dataset, arch, paradigm, variant, seed):
    if variant == "cascade" and set(AV_TRAIN) <= {"tau", "n_embed"}:
        table2 = vrun("table2", dataset, arch, paradigm, seed)
        if "/table2/" in table2:
            return table2
    return f"{RUNS}/ancre/{dataset}/{arch}/{paradigm}/{variant}/seed{seed}"


ANCRE_VISION_RUNS = [(ancre_vision_dir(d, a, p, v, s), v) for d in vision_labels("ancre.vision.datasets", AV.get("datasets", []))
                     for a in AV.get("archs", [])
                     for p, vs in AV.get("runs", {}).items() for v in vs for s in AV.get("seeds", [])]
ANCRE_LEARNED = [f"{RUNS}/ancre/{ANCRE['arch']}/{p}/{v}" for p, vs in ANCRE["runs"].items() for v in vs if v.startswith("ancre")]
ANCRE_LEARNED += [d for d, v in ANCRE_VISION_RUNS if v.startswith("ancre")]  # the heatmap's panels
ANCRE_DIRS += [d for d, _ in ANCRE_VISION_RUNS]


def ancre_lm_dirs(w):
    """The LM runs of lm.ancre_paradigms (cascade and each ANCRé variant, lm.smk) for the ANCRé table's LM rows, when
    the LM track takes part in this scale (regenerating: the cached ones). An input function: LM_RUNS is defined by
    lm.smk, included after this file."""
    if not workflow.is_rule("train_lm") or "lm" not in config["scales"][SCALE].get("tracks", ["lm"]):
        return []
    dirs = [f"{RUNS}/lm/{LM_ARCH}/{p}/{v}/seed{s}" for p, v in LM_RUNS if p in LMC["ancre_paradigms"] for s in LMC["seeds"]]
    return [d for d in dirs if os.path.exists(f"{d}/run.json")] if CACHED_ONLY else dirs


def ancre_vision_args(w):
    """vision_args of the run (recipe, data, device), then ancre.vision.train and the variant's topology keys."""
    keys = {**AV_TRAIN, **TOPOLOGY_VARIANTS[w.variant]}
    run = SimpleNamespace(vexp=f"ancre_{w.variant}", dataset=w.dataset, arch=w.arch, setting=w.paradigm, seed=w.seed)
    return vision_args(run) + "".join(f" --{k} {v}" for k, v in keys.items())


ANCRE_DIRS = cached("ancre", ANCRE_DIRS, partial=True)  # regenerating: the cached rows (rows stand alone)
ANCRE_LEARNED = [d for d in ANCRE_LEARNED if d in ANCRE_DIRS]
