"""An equal tuning budget for every paradigm (issue 12, after AlgoPerf's external tuning): N learning-rate trials,
picked on validation data, then the seeds at the pick; and runs matched to another run's compute.

    python -m lpa_core tune --out DIR [--trials 6] [--span 2] [--points centred|vdc] [--tune-seed 0]
                            [--match-dir RUN --match steps|flops] <train options: --paradigm ... --seeds ...>

Trials: lr * 10**(span * (u - 1/2)), log-uniform over `span` decades around the recipe's lr, the same points for
every paradigm and dataset. `centred` (the default): u = (k + 1/2)/n, k = 0..n-1, the midpoints of n equal strata,
the n-point set of least discrepancy on [0, 1] (a quasirandom sample that covers the whole space: for n = 6 and
span 2, lr * 10**-5/6 .. lr * 10**+5/6). `vdc`: the first n van der Corput points (base 2) after 0, u = 1/2, 1/4,
3/4, 1/8, 5/8, 3/8, ...: the recipe's own lr first, but for n = 6 only lr * 10**-0.75 .. lr * 10**+0.5 (the
scheme of the tune folders made before 2026-12-02: a request records `points` only when it is not vdc, `recorded`).
Phase 1 trains the trials as one vectorised job (DIR/trials: every dataset x the tune seed x the trial lrs, exp
`<exp>_trials`). The pick, per dataset: the lowest full-depth validation error
(val_mse; classification val_ce) at the last evaluated epoch; a diverged trial is never picked; ties go to the
earlier trial. Phase 2 trains the asked seeds at the picks (DIR/final, dataset_lrs). Selection reads the
validation points only (lpa_core.data.make_val), never the test points.

Equal compute (--match-dir RUN --match steps|flops): the epochs are set so that each run takes as many optimizer
steps (or training FLOPs) as a run of RUN did (the mean over its ok runs in summary.csv): this paradigm's cost per
epoch is measured over one calibration epoch (one dataset, the tune seed), epochs = round(RUN's total / that).
Exact for the paradigms whose cost is the same every epoch (one step per batch: Simultaneous, LayerDrop up to
its random drops, LayerSkip, deep supervision).

DIR/tune.json, written last: the request (tune options and the train options as given), the trial lrs, the
validation error of every trial, the picks, the epochs and the match. A phase whose run folder verifies under the
same config is not trained again; an interrupted one resumes from its checkpoint (lpa_core.train).

Lean folders (`lean`): a tune job trains many runs, so its folders keep what the selection and the fair report read
(the repository must travel, under 35 MiB): history.csv only the selection metric's rows (val_mse; val_ce for
classification; trials: the last evaluated epoch, what the pick reads; final: every evaluated epoch, the
time-to-target curves; `--history last`: the last one, for workloads whose time to target nothing reads, such as
the claims map's), no grid.npz (run.json keeps the
targets' standard deviation over its plotting grid, `target_sd`), and coeffs.csv only for a learned topology;
layerwise.csv (test error at every depth; not the trials': test errors no selection may read) and summary.csv whole;
an equal-compute run (--match) keeps every k-th evaluation, k = its epochs / the matched run's (rounded), and the
last: as many points on its curve as the run it matches has, the same resolution in compute for time to target. run.json's manifest is then made again and records
`lean`.
"""
import argparse
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from lpa_core import io, runs
from lpa_core.config import TrainConfig

TUNE_JSON = "tune.json"


def van_der_corput(i, base=2):
    u, f = 0.0, 1.0 / base
    while i:
        i, d = divmod(i, base)
        u, f = u + d * f, f / base
    return u


POINTS = ("centred", "vdc")


def trial_lrs(lr, n, span=2.0, points="centred"):
    """The n trial learning rates, log-uniform over `span` decades centred on lr (module doc: `points`)."""
    us = [(k + 0.5) / n for k in range(n)] if points == "centred" else [van_der_corput(i) for i in range(1, n + 1)]
    return [float(lr * 10 ** (span * (u - 0.5))) for u in us]


def parser():
    p = argparse.ArgumentParser(prog="python -m lpa_core tune", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the tune folder: trials/, final/ and tune.json go here")
    p.add_argument("--ckpt-dir", default=None, help="checkpoints (default checkpoints/<out>)")
    p.add_argument("--trials", type=int, default=6, help="learning-rate trials per paradigm and dataset (6)")
    p.add_argument("--span", type=float, default=2.0, help="decades the trials span around --lr (2)")
    p.add_argument("--points", choices=POINTS, default="centred",
                   help="the trials' points in the span: centred strata (centred) or van der Corput (vdc); module doc")
    p.add_argument("--tune-seed", type=int, default=0, help="the seed the trials train (0)")
    p.add_argument("--match-dir", default=None, help="a run folder whose per-run compute this tune's runs match")
    p.add_argument("--match", choices=("steps", "flops"), default=None, help="what --match-dir's runs are matched on")
    p.add_argument("--history", choices=("all", "last"), default="all",
                   help="final/history.csv keeps every evaluated epoch (all: time to target) or the last (last)")
    p.add_argument("--scale", default="adhoc")
    p.add_argument("--parent-pid", type=int, default=None)
    return p


def request(tokens):
    """(argparse namespace, the request, the typed train options) of a tune command's tokens. The request (tune
    options + train options, execution keys such as threads left out) is what tune.json records: the workflow
    compares it with the one it would make now to know whether a tune folder is fresh."""
    args, rest = parser().parse_known_args(tokens)
    if (args.match_dir is None) != (args.match is None):
        raise ValueError("match: give --match-dir and --match together")
    if args.trials < 1 or not args.span >= 0:
        raise ValueError(f"trials/span: need trials >= 1 and span >= 0, got {args.trials}, {args.span}")
    train = TrainConfig.parse_options(rest)
    for key in ("lrs", "dataset_lrs"):
        if key in train:
            raise ValueError(f"{key}: set by tune itself (trials, then the picks)")
    req = {"trials": args.trials, "span": args.span, "tune_seed": args.tune_seed, "match": args.match,
           "match_dir": args.match_dir, "train": {k: list(v) if isinstance(v, tuple) else v for k, v in train.items()
                                                 if k not in runs.EXECUTION_KEYS}}
    req.update({k: getattr(args, k) for k, old in LEGACY.items() if getattr(args, k) != old})
    return args, req, train


LEGACY = {"history": "all", "points": "vdc"}  # options added later: what the folders made before them did


def recorded(req):
    """A request with every LEGACY option it leaves out filled in (a request records one only where it differs)."""
    return {**LEGACY, **req}


SELECT = ("val_mse", "val_ce")  # the selection metric: regression, classification (tabular)


def pick(trials_dir, cfg):
    """({dataset: picked lr}, {dataset: [final validation error per trial]}) from a trials run folder."""
    h = pd.read_csv(Path(trials_dir) / "history.csv", keep_default_na=False, na_values=["nan", "NaN", ""])
    metric = SELECT[0] if SELECT[0] in set(h.metric) else SELECT[1]
    h = h[h.metric == metric]
    last = h[h.epoch == h.epoch.max()]
    picks, val = {}, {}
    for d in cfg.datasets:
        errs = [float(last[(last.dataset == d) & np.isclose(last.base_lr, lr, rtol=0, atol=0)].value.iloc[0]) for lr in cfg.lrs]
        val[d] = errs
        ok = [k for k, e in enumerate(errs) if math.isfinite(e)]
        picks[d] = cfg.lrs[min(ok, key=lambda k: errs[k])] if ok else cfg.lrs[0]
    return picks, val


def per_epoch(cfg, what):
    """This paradigm's steps or FLOPs per run over one calibration epoch (the first dataset, one seed)."""
    import torch

    from lpa_core.paradigms import get_paradigm
    from lpa_core.train import make_task

    torch.set_num_threads(cfg.threads)
    ctx = make_task(replace(cfg, datasets=cfg.datasets[:1], seeds=cfg.seeds[:1], dataset_lrs=cfg.dataset_lrs[:1]))
    ctx.epoch = 0
    ctx.set_lr(cfg.run_lrs[0])
    get_paradigm(cfg.paradigm)(ctx, 0)
    return float((ctx.steps if what == "steps" else ctx.flops)[0])


def matched_epochs(cfg, match_dir, what):
    info = runs.verify_run(match_dir)
    s = pd.read_csv(Path(match_dir) / "summary.csv")
    total = float(s[s.status == "ok"][what].mean())
    if not math.isfinite(total):
        raise ValueError(f"match-dir: {match_dir} has no ok run to match ({info['experiment']})")
    return max(1, round(total / per_epoch(cfg, what))), total


def lean(run_dir, last_only, stride=1, trials=False):
    """Keep what a tune folder's readers need (module doc), in place; the manifest made again. Idempotent.
    stride: keep every stride-th evaluation (and the last); trials: no layerwise.csv (test errors nothing reads)."""
    run_dir = Path(run_dir)
    info = runs.verify_run(run_dir)
    h = pd.read_csv(run_dir / "history.csv", keep_default_na=False, na_values=["nan", "NaN", ""])
    h = h[h.metric.isin(SELECT)]
    if last_only:
        h = h[h.epoch == h.epoch.max()]
    elif stride > 1:
        every = stride * info["config"]["eval_every"]
        h = h[(h.epoch % every == 0) | (h.epoch == h.epoch.max())]
    io.write_csv(run_dir / "history.csv", list(h.columns), h.itertuples(index=False))
    sd = dict(info.get("target_sd", {}))
    if (run_dir / "grid.npz").is_file():  # the targets' spread over the domain (the fair report's normalised errors)
        g = np.load(run_dir / "grid.npz")
        sd = {str(d): float(np.std(t)) for d, t in zip(g["datasets"], g["truth"])}
    drop = ["grid.npz"] + (["coeffs.csv"] if info["config"]["topology"] == "cascade" else []) + (["layerwise.csv"] if trials else [])
    for name in drop:
        (run_dir / name).unlink(missing_ok=True)
    rows = " of the last epoch" if last_only else f" of every {stride}th evaluation and the last" if stride > 1 else ""
    runs.refinish(run_dir, lean=f"history: {'/'.join(SELECT)} rows{rows} only; {', '.join(drop)} not kept (lpa_core.tune.lean)",
                  **({"target_sd": sd} if sd else {}))


def phase(cfg, out, ckpt, scale, log):
    """Train cfg into `out` unless a verified run of the same config is there already."""
    from lpa_core.train import train

    try:
        if not runs.config_changes(runs.verify_run(out)["config"], cfg.to_dict()):
            log(f"[{cfg.exp}/{cfg.paradigm}] {out}: done already")
            return
    except runs.RunError:
        pass
    train(cfg, out, ckpt, log=log, scale=scale)


def tune(tokens, log=print, watch=None):
    """Run a tune command's tokens; `watch(pid)` (the CLI's) stops the job when --parent-pid's process ends."""
    args, req, options = request(tokens)
    if args.parent_pid and watch:
        watch(args.parent_pid)
    out = Path(args.out)
    ckpt = Path(args.ckpt_dir) if args.ckpt_dir else None
    base = TrainConfig.from_dict(options)
    if base.task != "surfaces":
        raise ValueError(f"arch: tune trains vectorised surface jobs; '{base.arch}' is a {base.task} arch (tune it per job)")
    match = None
    if args.match:
        epochs, total = matched_epochs(base, args.match_dir, args.match)
        base = replace(base, epochs=epochs)
        ref = runs.verify_run(args.match_dir)["config"]["epochs"]
        match = {"dir": args.match_dir, "by": args.match, "target_per_run": total, "epochs": epochs, "stride": max(1, round(epochs / ref))}
        log(f"[{base.exp}/{base.paradigm}] {args.match} matched to {args.match_dir}: {epochs} epochs")
    lrs = trial_lrs(base.lr, args.trials, args.span, args.points)
    trials = replace(base, exp=f"{base.exp}_trials", seeds=(args.tune_seed,), lrs=tuple(lrs))
    phase(trials, out / "trials", ckpt and ckpt / "trials", args.scale, log)
    picks, val = pick(out / "trials", trials)
    lean(out / "trials", last_only=True, trials=True)
    final = replace(base, dataset_lrs=tuple(picks[d] for d in base.datasets))
    phase(final, out / "final", ckpt and ckpt / "final", args.scale, log)
    lean(out / "final", last_only=args.history == "last", stride=match["stride"] if match else 1)
    io.write_json(out / TUNE_JSON, {"request": req, "lrs": lrs, "val": val, "picks": picks, "epochs": base.epochs, "match": match})
    log(f"[{base.exp}/{base.paradigm}] picks: " + ", ".join(f"{d} {lr:.3g}" for d, lr in picks.items()))
