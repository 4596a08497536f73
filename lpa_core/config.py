"""The one training config: every key with its default, unit and meaning. Unknown keys and bad values are
errors that name the key and list what is valid. The resolved config is saved into every run.json.

Three tasks share it (lpa_core.train), chosen by `arch`: the surfaces (resmlp), images (ResNets, ViTs) and language
models (lpa_core.lm: named sizes or a save_pretrained directory). A key that only some tasks read is an error when
set, away from its default, for another one (it would be ignored)."""
import math
from dataclasses import asdict, dataclass, fields

SURFACE_ONLY = ("width", "depth", "activation", "n_train", "n_test", "n_val", "domain", "grid", "grid_seeds", "lrs", "dataset_lrs")
FLOAT_LISTS = ("lrs", "dataset_lrs")  # empty-default list keys read as floats on the command line (the others: their default's type)
VISION_ONLY = ("data_dir", "imagenet_dir", "train_subset", "test_subset", "head", "n_embed", "precision", "memory_format", "workers", "val_frac")
LM_ONLY = ("seq_len", "vocab_size", "tokenizer", "epoch_batches", "eval_tokens", "n_generate")
TASK_KEYS = {"surfaces": SURFACE_ONLY, "vision": VISION_ONLY, "lm": LM_ONLY + ("data_dir", "precision", "val_frac")}


@dataclass
class TrainConfig:
    # experiment: one run per (dataset, seed); all of them train as one vectorised model
    exp: str = "adhoc"                # experiment name, recorded in every CSV row
    arch: str = "resmlp"              # model (lpa_core.registry.MODELS, its task: surfaces, vision or lm)
    datasets: tuple = ("high_freq",)  # surfaces (lpa_core.registry.SURFACES) or images (IMAGE_DATASETS: one per job)
    seeds: tuple = (0,)               # one run per seed and dataset; a seed fixes data, init and batch order (images: one seed per job)
    paradigm: str = "simultaneous"    # lpa_core.registry.PARADIGMS
    # model (surfaces; a vision arch fixes its own size; the topology keys apply to every arch)
    width: int = 10                   # residual stream and block hidden width
    depth: int = 6                    # number of residual blocks L
    activation: str = "relu"
    topology: str = "cascade"         # residual topology (lpa_core.registry.TOPOLOGIES; lpa_core.topology)
    tau: float = 0.1                  # ancre softmax temperature (paper Eq. 8: 0.1)
    normalisation: str = "ingoing"    # ancre coefficients: ingoing (softmax over i, Eq. 7), outgoing (over j, Eq. 6), none
    wiring: str = "auto"              # where the shortcut mix goes (lpa_core.topology): replace = instead of the block's own shortcut (paper text), add = on top of it (authors' code); auto = add for language models, replace otherwise
    shortcut_decay: str = "auto"      # weight decay on the shortcut coefficients: none, same = the run's weight_decay (the authors' one parameter group); auto = what each optimizer did before: none, but same on the surfaces with weight_decay > 0 (one decay for every parameter there)
    # data (surfaces)
    n_train: int = 10_000             # points per surface (paper: 10,000 train, 10,000 test)
    n_test: int = 10_000
    n_val: int = 10_000               # validation points per surface, a draw of their own (model selection reads them, never the test points; 0 = none)
    domain: tuple = (-1.0, 1.0)       # inputs uniform in domain^2 (the paper does not say; our choice)
    # images (vision archs; lpa_core.images, lpa_core.vision)
    data_dir: str = "data"            # where image datasets are found or downloaded to: <data_dir>/cifar-10-batches-py, cifar-100-python, FashionMNIST/raw (Fashion-MNIST is also found in Debian's /usr/share/datasets/fashion-mnist)
    imagenet_dir: str = ""            # ImageNet-1k: an ImageFolder root holding train/ and val/ (one folder per class)
    train_subset: int = 0             # train on this many images, a fixed subset, the same for every seed (0 = all): quick runs
    test_subset: int = 0              # evaluate on this many test images, a fixed subset (0 = all)
    head: str = "pad"                 # ResNet shared head at a block narrower than the widest stage: pad = average pool, zero-pad channels, one linear (paper Sec 4.2); pad_norm = the same after a parameter-free LayerNorm (see lpa_core.vision_models)
    n_embed: int = 512                # test images whose per-depth embeddings go to embeddings.npz (t-SNE, Fig. 5); 0 = none
    precision: str = "auto"           # auto = bf16 autocast on CUDA, fp32 on CPU; bf16 = bf16 autocast on any device (CPU: torch's CPU autocast, the CUDA path's stand-in); fp32 = fp32 everywhere
    memory_format: str = "auto"       # ResNets: auto = channels_last under bf16 on CUDA, else contiguous; channels_last (any device, the CUDA path's stand-in on CPU); contiguous
    workers: int = 4                  # ImageNet: DataLoader worker processes
    val_frac: float = 0.0             # images and LMs: fraction of the training data held out as a fixed validation split (the same for every seed and paradigm; images: after train_subset; LMs: the last tokens of the training split); 0 = none
    # language models (LM archs: lpa_core.lm.LM_ARCHS or a save_pretrained directory; datasets = the corpus:
    # pydoc (offline), hf:NAME[:CONFIG] or local text files, lpa_core.text; data_dir holds the trained tokenizer)
    seq_len: int = 256                # tokens per training sequence (ANCRe Table 7: 256)
    vocab_size: int = 8192            # tokenizer 'bpe': vocabulary trained on the corpus (our default; GaLore uses T5's 32k)
    tokenizer: str = "auto"           # bpe = byte-level BPE trained on the training split; a tokenizer.json or a directory holding one; auto = the model directory's (pretrained arch) else bpe
    epoch_batches: int = 0            # an LM epoch: this many batches of random windows (0 = one pass over the training tokens)
    eval_tokens: int = 0              # validation tokens evaluated (fixed, from the start of the held-out split; 0 = all)
    n_generate: int = 40              # tokens generated per prompt and depth in samples.txt
    # optimisation (one recipe for every paradigm; the optimizer is the family's: surfaces Adam(W), ResNet SGD
    # with Nesterov momentum 0.9, ViT AdamW (lpa_core.vision.RECIPES has the public recipe values for images))
    epochs: int = 150                 # passes over the training set; LPA's epoch is Algorithm 1's (L+1 steps/batch)
    batch_size: int = 100             # examples per optimizer step
    lr: float = 1e-2                  # peak learning rate
    lrs: tuple = ()                   # surfaces: learning-rate trials: one run per (dataset, seed, lr), each at its own peak lr (lr unused; rows gain base_lr); lpa_core.tune
    dataset_lrs: tuple = ()           # surfaces: one peak lr per dataset, in `datasets` order (a tuned job's picks; lr unused)
    weight_decay: float = 0.0         # surfaces, ViT: decoupled (AdamW) weight decay, per step, times lr; ResNet: SGD's L2 weight decay
    warmup_epochs: int = 0            # linear LR warm-up, then cosine decay
    final_lr_frac: float = 0.0        # cosine ends at lr * final_lr_frac
    # paradigm options
    lpa_e2e: str = "epoch"            # Alg. 1 line 11: 'epoch' = full-depth pass after the progressive pass (as printed); 'batch' = right after each batch's progressive steps
    group_size: int = 2               # lpa_grouped: blocks per LPA unit (paper Sec 5.4)
    adaptive_warmup: int = 10         # adaptive_lpa: N_pre warm-up epochs of plain LPA (Alg. 2)
    adaptive_alpha: str = "batch"     # adaptive_lpa: 'batch' = compare with the previous depth of the same batch (Sec 5.3 prose); 'run' = best metric so far, never reset (Alg. 2 as printed)
    layerdrop_rate: float = 0.2       # layerdrop: probability that a block is dropped for a whole batch (fairseq LayerDrop's p; our default); 0 = simultaneous
    layerskip_pmax: float = 0.2       # layerskip: per-example dropout rate of the last block, rising from 0 at block 1 (our default); 0 = no layer dropout
    layerskip_scale: str = "exp"      # layerskip: how the dropout rate rises with depth u = (j-1)/(L-1): exp = pmax (2^u - 1) (torchtune's default), linear = pmax u
    layerskip_curriculum: str = "rotational"  # layerskip: early exits: rotational = every layerskip_rotation-th block, rotating per step; gradual = switched on from the last block down over the first half of training; none
    layerskip_rotation: int = 2       # layerskip: rotational curriculum period C (exits at blocks j = step mod C)
    layerskip_exit_scale: float = 1.0  # layerskip: e_scale, weight of the early-exit losses against the full-depth one (LayerSkip's sum scale, normalised); 0 = full-depth loss only
    # I/O and execution
    eval_every: int = 5               # epochs between history evaluations (the last epoch is always evaluated)
    grid: int = 64                    # points per axis of the saved prediction grid (stored as float16)
    grid_seeds: int = 1               # grid.npz keeps the predictions of the first this-many seeds of each dataset (ok runs first; the figures draw the first); 0 = every run
    ckpt_every_s: float = 30.0        # checkpoint at the end of an epoch once this many seconds have passed; 0 = every epoch
    threads: int = 1                  # torch CPU threads (tiny models: 1 per process is fastest)
    device: str = "cpu"

    def __post_init__(self):
        from lpa_core.models import ACTIVATIONS
        from lpa_core.registry import IMAGE_DATASETS, MODELS, PARADIGMS, SURFACES, TOPOLOGIES, is_pretrained
        from lpa_core.tabular import check as check_tabular, is_tabular
        from lpa_core.topology import NORMALISATIONS, WIRINGS
        from lpa_core.vision_models import HEADS

        for f in fields(self):  # a YAML value of the wrong type is a one-line error, not a traceback later
            v, want = getattr(self, f.name), type(f.default)
            ok = isinstance(v, tuple) if want is tuple else not isinstance(v, bool) and isinstance(v, (int, float) if want is float else want)
            if not ok:
                raise ValueError(f"{f.name}: expected {'a list' if want is tuple else want.__name__}, got {v!r}")
        if self.arch not in MODELS and not is_pretrained(self.arch):
            raise ValueError(f"arch: unknown '{self.arch}' (valid: {', '.join(MODELS)}, or a transformers "
                             f"save_pretrained directory; a plugin module adds more: lpa_core.registry)")
        vision, lm = self.task == "vision", self.task == "lm"
        for key, val, valid in [("paradigm", [self.paradigm], PARADIGMS),
                                ("datasets", [] if lm else [d for d in self.datasets if not is_tabular(d)], IMAGE_DATASETS if vision else SURFACES), ("activation", [self.activation], ACTIVATIONS),
                                ("lpa_e2e", [self.lpa_e2e], ("epoch", "batch")), ("adaptive_alpha", [self.adaptive_alpha], ("batch", "run")),
                                ("layerskip_scale", [self.layerskip_scale], ("exp", "linear")),
                                ("layerskip_curriculum", [self.layerskip_curriculum], ("rotational", "gradual", "none")),
                                ("topology", [self.topology], TOPOLOGIES), ("normalisation", [self.normalisation], NORMALISATIONS),
                                ("wiring", [self.wiring], ("auto", *WIRINGS)), ("shortcut_decay", [self.shortcut_decay], ("auto", "none", "same")),
                                ("head", [self.head], HEADS), ("precision", [self.precision], ("auto", "bf16", "fp32")),
                                ("memory_format", [self.memory_format], ("auto", "channels_last", "contiguous"))]:
            for v in val:
                if v not in valid:
                    raise ValueError(f"{key}: unknown '{v}' (valid: {', '.join(valid)})")
        if self.n_val < 0:
            raise ValueError(f"n_val: must be >= 0, got {self.n_val}")
        for key in ("width", "depth", "n_train", "n_test", "epochs", "batch_size", "group_size", "eval_every", "grid", "threads",
                    "layerskip_rotation", "seq_len", "vocab_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be a positive integer, got {getattr(self, key)}")
        for f in fields(self):  # nan and inf pass every comparison below as False; name them here
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{f.name}: must be a finite number, got {v}")
        for key, vals in (("lr", [self.lr]), ("lrs", self.lrs), ("dataset_lrs", self.dataset_lrs)):
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in vals):
                raise ValueError(f"{key}: learning rates must be finite numbers > 0, got {', '.join(map(str, vals))}")
        if self.lrs and self.dataset_lrs:
            raise ValueError("lrs/dataset_lrs: give trials (lrs) or per-dataset rates (dataset_lrs), not both")
        if self.dataset_lrs and len(self.dataset_lrs) != len(self.datasets):
            raise ValueError(f"dataset_lrs: one rate per dataset ({len(self.datasets)}), got {len(self.dataset_lrs)}")
        for key in ("datasets", "seeds", "lrs"):
            dup = sorted({v for v in getattr(self, key) if getattr(self, key).count(v) > 1}, key=str)
            if dup:
                raise ValueError(f"{key}: each value once, got {', '.join(map(str, dup))} more than once")
        if (len(self.domain) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in self.domain)
                or not self.domain[0] < self.domain[1]):
            raise ValueError(f"domain: two finite numbers lo,hi with lo < hi, got {','.join(map(str, self.domain))}")
        for key in ("lr", "weight_decay", "warmup_epochs", "adaptive_warmup", "ckpt_every_s", "final_lr_frac",
                    "train_subset", "test_subset", "n_embed", "workers", "layerskip_exit_scale", "grid_seeds",
                    "epoch_batches", "eval_tokens", "n_generate"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}: must be >= 0, got {getattr(self, key)}")
        for key in ("layerdrop_rate", "layerskip_pmax", "val_frac"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(f"{key}: a probability in [0, 1), got {getattr(self, key)}")
        if not self.tau > 0:
            raise ValueError(f"tau: must be > 0, got {self.tau}")
        resolve_auto(self.__dict__, self.task)  # so run.json records what ran
        if (self.task == "surfaces" and self.weight_decay and self.shortcut_decay == "none"
                and self.topology not in ("cascade", "all_fixed")):
            raise ValueError("shortcut_decay: the surface optimizer decays every parameter alike; set shortcut_decay: "
                             "same (decay the coefficients too) or weight_decay: 0")
        if not self.datasets or not self.seeds:
            raise ValueError("datasets/seeds: need at least one of each")
        defaults = {f.name: f.default for f in fields(self)}
        for key in sorted({k for keys in TASK_KEYS.values() for k in keys} - set(TASK_KEYS[self.task])):
            if getattr(self, key) != defaults[key]:
                where = " and ".join({"surfaces": "the surfaces (arch resmlp)", "vision": "vision archs", "lm": "language models"}[t]
                                     for t, keys in TASK_KEYS.items() if key in keys)
                raise ValueError(f"{key}: applies to {where} only, not to arch '{self.arch}' (leave it at {defaults[key]!r})")
        tab = [d for d in self.datasets if not (vision or lm) and is_tabular(d)]
        if tab and len(self.datasets) > 1:
            raise ValueError(f"datasets: a tabular dataset ({tab[0]}) trains alone in its job (its sizes are its own); got "
                             f"{len(self.datasets)} datasets: give each its own experiment")
        for d in tab:
            check_tabular(d)
        for d in self.datasets if vision else ():
            if d.startswith("imagefolder:"):
                from lpa_core.images import parse_folder

                parse_folder(d)
            elif is_tabular(d):
                raise ValueError(f"datasets: '{d}' is not an image dataset (valid: {', '.join(IMAGE_DATASETS)} or imagefolder:PATH)")
        if (vision or lm) and len(self.runs) != 1:
            raise ValueError(f"datasets/seeds: a {self.task} job trains one run (one dataset, one seed), got "
                             f"{len(self.datasets)} dataset(s) x {len(self.seeds)} seed(s); fan out in the workflow")
        if vision and self.head != "pad" and not self.arch.startswith("resnet"):
            raise ValueError(f"head: '{self.head}' is for ResNets; a ViT's blocks share one width (valid: pad)")
        if "imagenet" in self.datasets and vision and not self.imagenet_dir:
            raise ValueError("imagenet_dir: needed for dataset imagenet (an ImageFolder root holding train/ and val/)")
        if self.paradigm == "adaptive_lpa" and self.adaptive_warmup >= self.epochs:
            raise ValueError(f"adaptive_warmup: must be < epochs ({self.epochs}), got {self.adaptive_warmup}")

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in fields(cls)}
        for k in d:
            if k not in names:
                raise ValueError(f"{k}: unknown config key (valid: {', '.join(sorted(names))})")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)

    @classmethod
    def parse_options(cls, tokens):
        """Typed keys from command-line tokens `--key value ...` (python -m lpa_core train, and the workflow, which
        hashes what it passes): a list key is comma-separated, every value is read with its key's type."""
        by_name, out, it = {f.name: f for f in fields(cls)}, {}, iter(tokens)
        for tok in it:
            key = tok.lstrip("-").replace("-", "_")
            if not tok.startswith("--") or key not in by_name:
                raise ValueError(f"{key}: unknown option (valid: {', '.join('--' + k for k in by_name)})")
            val = next(it, None)
            if val is None:
                raise ValueError(f"{key}: missing value")
            default = by_name[key].default
            try:
                if isinstance(default, tuple):
                    kind = float if key in FLOAT_LISTS else type(default[0]) if default else str
                    out[key] = tuple(kind(v) for v in val.split(",")) if val else ()  # '' = an empty list
                else:
                    out[key] = type(default)(val)
            except ValueError:
                raise ValueError(f"{key}: cannot read '{val}' as {type(default).__name__}") from None
        return out

    @classmethod
    def resolved(cls, overrides):
        """What to_dict() of cls.from_dict(overrides) is, without validating (no task module is imported): the
        workflow's cheap view of the config it asks of a run."""
        d = {f.name: f.default for f in fields(cls)} | dict(overrides)
        resolve_auto(d, task_of(d["arch"]))
        return {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in d.items()}

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def task(self):
        """'vision' for an image arch, 'lm' for a language model, else 'surfaces' (lpa_core.train.make_task)."""
        return task_of(self.arch)

    @property
    def runs(self):
        """(dataset, seed) of every run, in the order of the model's run axis: datasets x seeds (x lrs: trials)."""
        return [(d, s) for d in self.datasets for s in self.seeds for _ in self.lrs or [None]]

    @property
    def run_lrs(self):
        """Every run's peak learning rate, in run order (lrs, dataset_lrs or lr)."""
        per_dataset = dict(zip(self.datasets, self.dataset_lrs or [self.lr] * len(self.datasets)))
        return [lr for d in self.datasets for _ in self.seeds for lr in self.lrs or [per_dataset[d]]]


def task_of(arch):
    """'vision' for an image arch, 'lm' for a language model, else 'surfaces' (lpa_core.train.make_task)."""
    from lpa_core.registry import task_of as registered

    return registered(arch)


def resolve_auto(d, task):
    """The 'auto' values a config resolves, in place (d: TrainConfig fields): wiring = add for language models (the
    authors' LLaMA code), replace otherwise (the paper's text); shortcut_decay = same on the surfaces with weight
    decay (one decay for every parameter there, as before the key existed), none otherwise."""
    if d["wiring"] == "auto":
        d["wiring"] = "add" if task == "lm" else "replace"
    if d["shortcut_decay"] == "auto":
        d["shortcut_decay"] = "same" if task == "surfaces" and d["weight_decay"] else "none"
