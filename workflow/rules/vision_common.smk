# The vision track's configuration for this scale, run folders and job options: the functions and names
# workflow/rules/vision.smk and ancre.smk use (included by the Snakefile before both). See vision.smk for the layout.
import re
import shlex

_VOVER = config["scales"][SCALE].get("vision", {})


def _merge(a, b):
    """b on top of a, dicts merged recursively, anything else replaced."""
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


VIS = _merge(config["vision"], {k: v for k, v in _VOVER.items() if k != "archs"})
ARCH_FOR = dict(_VOVER.get("archs") or {a: a for a in VIS["archs"]})  # paper arch -> the arch run at this scale
for _a in ARCH_FOR:
    if _a not in VIS["archs"]:
        raise ValueError(f"scales.{SCALE}.vision.archs: '{_a}' is not in vision.archs ({', '.join(VIS['archs'])})")
PAPER_ARCH = {run: paper for paper, run in ARCH_FOR.items()}
V_ARCHS = list(ARCH_FOR.values())
V_DATA = VIS["data_dir"]
V_GROUP = int(VIS.get("train", {}).get("group_size", 2))  # the Table 2 lpa_grouped unit size
if not int(VIS.get("train", {}).get("n_embed", 512)):
    raise ValueError("vision.train.n_embed: must be > 0 (the t-SNE figure reads embeddings.npz)")


# Image datasets: a registered name, or imagefolder:PATH[:size=N] (a folder of class subfolders, lpa_core.images).
# Run folders and figure names hold a dataset's label (lpa_core.registry.label: imagefolder:photos/pets ->
# imagefolder_pets), jobs its name (V_NAMES); tables show the name as the config gives it.
V_NAMES = {}  # label -> name, of every vision dataset list (table4's imagenet: its own name)


def vision_labels(key, names):
    """The labels of a config's dataset list, recorded for the jobs; two names of one label: one line naming them."""
    for d in names:
        if V_NAMES.setdefault(_registry.label(d), d) != d:
            raise ValueError(f"{key}: '{d}' and '{V_NAMES[_registry.label(d)]}' share the label '{_registry.label(d)}' "
                             "(run folders, figure names): rename one folder")
    return [_registry.label(d) for d in names]


V_DATASETS = vision_labels("vision.datasets", VIS["datasets"])
ABL_DATASETS = vision_labels("vision.ablation.datasets", VIS["ablation"]["datasets"])


def _stand_in(paper_arch, key):
    if paper_arch not in ARCH_FOR:
        raise ValueError(f"vision.{key}.arch: '{paper_arch}' has no model at scale {SCALE} "
                         f"(scales.{SCALE}.vision.archs maps {', '.join(ARCH_FOR) or 'nothing'})")
    return ARCH_FOR[paper_arch]


T3_ARCH = _stand_in(VIS["table3"]["arch"], "table3")
ABL_ARCH = _stand_in(VIS["ablation"]["arch"], "ablation")
for _p in VIS["table3"]["paradigms"]:
    if _p not in VIS["paradigms"]:
        raise ValueError(f"vision.table3.paradigms: '{_p}' is not among vision.paradigms (Table 3 reads Table 2's runs)")
IMAGENET = bool(VIS.get("imagenet_dir"))
T4 = VIS.get("table4", {})
T4_ARCH = ARCH_FOR.get(T4.get("arch"), T4.get("arch"))
SETTING_RE = rf"(?:{'|'.join(map(re.escape, _registry.PARADIGMS))})(?:_lrx[0-9.]+)?|lpa_grouped_k[0-9]+"


def family(arch):
    return "resnet" if arch.startswith("resnet") else "vit"


def parse_setting(setting):
    """(paradigm, extra TrainConfig keys) of a path's setting: lpa_grouped_k{k}, {paradigm}_lrx{f} or a paradigm."""
    m = re.fullmatch(r"lpa_grouped_k(\d+)", setting)
    if m:
        return "lpa_grouped", {"group_size": int(m[1])}
    base, _, f = setting.partition("_lrx")
    return base, ({"lr_factor": float(f)} if f else {})


def vision_keys(vexp, arch, setting):
    """TrainConfig keys of one run: recipe of the arch's family, vision.train, table4's train, the variant."""
    paradigm, extra = parse_setting(setting)
    keys = {**VIS["recipes"][family(arch)], **VIS.get("train", {})}
    if vexp == "table4":
        keys.update(T4.get("train", {}))
    if "lr_factor" in extra:
        keys["lr"] = float(f"{keys['lr'] * extra.pop('lr_factor'):.6g}")
    keys.update(extra)
    return paradigm, keys


def vision_args(w):
    paradigm, keys = vision_keys(w.vexp, w.arch, w.setting)
    opts = {"exp": w.vexp, "arch": w.arch, "paradigm": paradigm, "datasets": shlex.quote(V_NAMES.get(w.dataset, w.dataset)), "seeds": w.seed,
            "data_dir": V_DATA, **keys}
    if w.dataset == "imagenet":
        opts["imagenet_dir"] = VIS["imagenet_dir"]
    if w.vexp == "eqflops":  # Simultaneous for as many FLOPs as LPA at the recipe (vision.smk)
        opts["epochs"] = equal_flops_epochs(opts)
    if rule_gpus("train_vision") and "device" not in keys:
        opts["device"] = "cuda"
    return " ".join(f"--{k} {v}" for k, v in opts.items())


# files that say a dataset is in data_dir (as lpa_core.images reads them; Fashion-MNIST's .gz in Debian's copy
# is unpacked on first use, a fast local step, also under the lock)
_DATA_FILES = {
    "fashion_mnist": [f"FashionMNIST/raw/{n}" for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")],
    "cifar10": [f"cifar-10-batches-py/{n}" for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]],
    "cifar100": ["cifar-100-python/train", "cifar-100-python/test"],
    "imagenet": [],
}


def data_check(dataset):
    """A shell test that is true when the dataset's files are in data_dir (a job then imports no torch to fetch);
    constant per dataset, so it never changes a job's params."""
    files = [os.path.join(V_DATA, f) for f in _DATA_FILES.get(dataset, [])]  # imagefolder: its own folder
    return " && ".join(f"test -f {shlex.quote(f)}" for f in files) or "true"


def vrun(vexp, dataset, arch, setting, seed):
    """The folder holding this run: the Table 2 run where the setting is one (same paradigm and keys), else its own."""
    paradigm, extra = parse_setting(setting)
    same = (not extra or extra == {"group_size": V_GROUP} or extra == {"lr_factor": 1.0})
    if (vexp != "table4" and same and paradigm in VIS["paradigms"] and dataset in V_DATASETS and arch in V_ARCHS
            and seed in VIS["seeds"]):
        return f"{RUNS}/table2/{dataset}/{arch}/{paradigm}/seed{seed}"
    return f"{RUNS}/{vexp}/{dataset}/{arch}/{setting}/seed{seed}"


def vruns(vexp, datasets, archs, settings):
    return list(dict.fromkeys(vrun(vexp, d, a, s, seed) for d in datasets for a in archs for s in settings
                              for seed in VIS["seeds"]))


T2_DIRS = vruns("table2", V_DATASETS, V_ARCHS, VIS["paradigms"])
T3_DIRS = vruns("table2", V_DATASETS, [T3_ARCH], VIS["table3"]["paradigms"])
GROUP_SETTINGS = ["simultaneous", "lpa"] + [f"lpa_grouped_k{k}" for k in VIS["group_sizes"]]
SEC54_DIRS = vruns("sec54", ABL_DATASETS, [ABL_ARCH], GROUP_SETTINGS)
LR_SETTINGS = [f"lpa_lrx{f:g}" for f in VIS["lr_sweep"]]
FIG10_DIRS = vruns("fig10", ABL_DATASETS, [ABL_ARCH], LR_SETTINGS)
T4_DIRS = [f"{RUNS}/table4/imagenet/{T4_ARCH}/{p}/seed{s}" for p in T4.get("paradigms", []) for s in VIS["seeds"]]
# issue 12's equal compute (vision.eqflops): Simultaneous at LPA's FLOPs per Table 2 (dataset, arch, seed), when the
# Table 2 grid has both (read with Table 2's runs by the vision_fair table)
EQ_ALL = [f"{RUNS}/eqflops/{d}/{a}/simultaneous/seed{s}" for d in V_DATASETS for a in V_ARCHS for s in VIS["seeds"]]
EQ_DIRS = EQ_ALL if VIS.get("eqflops") and {"simultaneous", "lpa"} <= set(VIS["paradigms"]) else []
VISION_DIRS = list(dict.fromkeys(T2_DIRS + T3_DIRS + SEC54_DIRS + FIG10_DIRS + (T4_DIRS if IMAGENET else []) + EQ_DIRS))
ARCH_MAP = " ".join(f"{run}={paper}" for run, paper in PAPER_ARCH.items() if run != paper)
VTABLE = (f"--paper {config['paper_results']} --scale {SCALE}" + (f" --arch-map {ARCH_MAP}" if ARCH_MAP else ""))
_RUN_FILES = ["layerwise", "history", "summary", "inference"]


def _dirs(w, input):
    return [os.path.dirname(f) for f in input.run]
