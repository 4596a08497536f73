# The language-model track's configuration for this scale, run folders and job options (included from lm.smk).
_LOVER = config["scales"][SCALE].get("lm", {})
LMC = {**config["lm"], **{k: v for k, v in _LOVER.items() if k != "train"}}
LM_TRAIN = {**config["lm"].get("train", {}), **_LOVER.get("train", {})}
LM_ARCH = LMC["arch"]
for _p in LMC["ancre_paradigms"]:
    if _p not in LMC["paradigms"]:
        raise ValueError(f"lm.ancre_paradigms: '{_p}' is not among lm.paradigms")
LM_RUNS = [(p, "cascade") for p in LMC["paradigms"]] + [(p, v) for v in LMC.get("ancre_variants", ["ancre_add", "ancre"])
                                                         for p in LMC["ancre_paradigms"]]
LM_DIRS = [f"{RUNS}/lm/{LM_ARCH}/{p}/{v}/seed{s}" for p, v in LM_RUNS for s in LMC["seeds"]]


# issue 12's equal compute (lm.eqflops): Simultaneous under the cascade at LPA's analytic FLOPs per seed, variant
# folder `eqflops` (exp eqflops: the lm_fair table reads it as equal_flops), when both paradigms are trained
LM_EQ_ALL = [f"{RUNS}/lm/{LM_ARCH}/simultaneous/eqflops/seed{s}" for s in LMC["seeds"]]
LM_EQ_DIRS = LM_EQ_ALL if LMC.get("eqflops") and {"simultaneous", "lpa"} <= set(LMC["paradigms"]) else []


def lm_args(w):
    eq = w.variant == "eqflops"
    opts = {"exp": "eqflops" if eq else "lm", "arch": w.arch, "paradigm": w.paradigm, "datasets": LMC["corpus"], "seeds": w.seed,
            "data_dir": LMC["data_dir"], **LM_TRAIN, **TOPOLOGY_VARIANTS["cascade" if eq else w.variant]}
    if eq:
        opts["epochs"] = equal_flops_epochs(opts)
    if rule_gpus("train_lm") and "device" not in LM_TRAIN:
        opts["device"] = "cuda"
    return " ".join(f"--{k} {v}" for k, v in opts.items())
