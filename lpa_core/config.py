"""The one training config: every key with its default, unit and meaning. Unknown keys and bad values are
errors that name the key and list what is valid. The resolved config is saved into every run.json."""
from dataclasses import asdict, dataclass, fields

from lpa_core.data import SURFACES


@dataclass
class TrainConfig:
    # experiment: one run per (dataset, seed); all of them train as one vectorised model
    exp: str = "adhoc"                # experiment name, recorded in every CSV row
    arch: str = "resmlp"              # model family (lpa_core.models.ARCHS)
    datasets: tuple = ("high_freq",)  # surfaces (lpa_core.data.SURFACES)
    seeds: tuple = (0,)               # one run per seed and dataset; a seed fixes data, init and batch order
    paradigm: str = "simultaneous"    # lpa_core.paradigms.PARADIGMS
    # model
    width: int = 10                   # residual stream and block hidden width
    depth: int = 6                    # number of residual blocks L
    activation: str = "relu"
    topology: str = "cascade"         # residual topology (lpa_core.topology): cascade, ancre, all_fixed, gains
    tau: float = 0.1                  # ancre softmax temperature (paper Eq. 8: 0.1)
    normalisation: str = "ingoing"    # ancre coefficients: ingoing (softmax over i, Eq. 7), outgoing (over j, Eq. 6), none
    # data
    n_train: int = 10_000             # points per surface (paper: 10,000 train, 10,000 test)
    n_test: int = 10_000
    domain: tuple = (-1.0, 1.0)       # inputs uniform in domain^2 (the paper does not say; our choice)
    # optimisation (one recipe for every paradigm)
    epochs: int = 150                 # passes over the training set; LPA's epoch is Algorithm 1's (L+1 steps/batch)
    batch_size: int = 100             # examples per optimizer step
    lr: float = 1e-2                  # Adam peak learning rate
    weight_decay: float = 0.0         # decoupled (AdamW) weight decay, per step, times lr
    warmup_epochs: int = 0            # linear LR warm-up, then cosine decay
    final_lr_frac: float = 0.0        # cosine ends at lr * final_lr_frac
    # paradigm options
    lpa_e2e: str = "epoch"            # Alg. 1 line 11: 'epoch' = full-depth pass after the progressive pass (as printed); 'batch' = right after each batch's progressive steps
    group_size: int = 2               # lpa_grouped: blocks per LPA unit (paper Sec 5.4)
    adaptive_warmup: int = 10         # adaptive_lpa: N_pre warm-up epochs of plain LPA (Alg. 2)
    adaptive_alpha: str = "batch"     # adaptive_lpa: 'batch' = compare with the previous depth of the same batch (Sec 5.3 prose); 'run' = best metric so far, never reset (Alg. 2 as printed)
    # I/O and execution
    eval_every: int = 5               # epochs between history evaluations (the last epoch is always evaluated)
    grid: int = 64                    # points per axis of the saved prediction grid (stored as float16)
    ckpt_every_s: float = 30.0        # checkpoint at the end of an epoch once this many seconds have passed; 0 = every epoch
    threads: int = 1                  # torch CPU threads (tiny models: 1 per process is fastest)
    device: str = "cpu"

    def __post_init__(self):
        from lpa_core.models import ACTIVATIONS, ARCHS
        from lpa_core.paradigms import PARADIGMS
        from lpa_core.topology import NORMALISATIONS, TOPOLOGIES

        for f in fields(self):  # a YAML value of the wrong type is a one-line error, not a traceback later
            v, want = getattr(self, f.name), type(f.default)
            ok = isinstance(v, tuple) if want is tuple else not isinstance(v, bool) and isinstance(v, (int, float) if want is float else want)
            if not ok:
                raise ValueError(f"{f.name}: expected {'a list' if want is tuple else want.__name__}, got {v!r}")
        for key, val, valid in [("arch", [self.arch], ARCHS), ("paradigm", [self.paradigm], PARADIGMS),
                                ("datasets", self.datasets, SURFACES), ("activation", [self.activation], ACTIVATIONS),
                                ("lpa_e2e", [self.lpa_e2e], ("epoch", "batch")), ("adaptive_alpha", [self.adaptive_alpha], ("batch", "run")),
                                ("topology", [self.topology], TOPOLOGIES), ("normalisation", [self.normalisation], NORMALISATIONS)]:
            for v in val:
                if v not in valid:
                    raise ValueError(f"{key}: unknown '{v}' (valid: {', '.join(valid)})")
        for key in ("width", "depth", "n_train", "n_test", "epochs", "batch_size", "group_size", "eval_every", "grid", "threads"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be a positive integer, got {getattr(self, key)}")
        for key in ("lr", "weight_decay", "warmup_epochs", "adaptive_warmup", "ckpt_every_s", "final_lr_frac"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}: must be >= 0, got {getattr(self, key)}")
        if not self.tau > 0:
            raise ValueError(f"tau: must be > 0, got {self.tau}")
        if not self.datasets or not self.seeds:
            raise ValueError("datasets/seeds: need at least one of each")
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

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def runs(self):
        """(dataset, seed) of every run, in the order of the model's run axis."""
        return [(d, s) for d in self.datasets for s in self.seeds]
