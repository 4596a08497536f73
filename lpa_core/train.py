"""One training job: a group of runs (datasets x seeds) under one paradigm, trained as one vectorised model.

Outputs in `out/` (each written atomically): layerwise.csv (test metric per run, depth and metric), history.csv
(per evaluated epoch: steps, samples, wall time, train/test error at full depth), summary.csv (one row per run:
status, compute, effective depth), grid.npz (predictions on a plotting grid at every depth) and run.json
(resolved config, provenance, start and end). Checkpoints go to `ckpt_dir` every cfg.ckpt_every_s seconds; a
restarted job resumes from there and ends with the same numbers as an uninterrupted one.
"""
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lpa_core import io
from lpa_core.data import grid, make_surface, surface
from lpa_core.models import create_model
from lpa_core.optim import RunAdam, cosine_lr
from lpa_core.paradigms import get_paradigm
from lpa_core.topology import coefficients

KEYS = ["exp", "dataset", "arch", "paradigm", "seed"]


class Context:
    """What a paradigm sees: the model, the optimizer, this epoch's batches, the loss, and `step`, the one place
    where parameters change. Counters are per run (runs of a group can take different steps: adaptive LPA)."""

    def __init__(self, cfg):
        self.cfg, self.n_runs = cfg, len(cfg.runs)
        data = [make_surface(d, cfg.n_train, cfg.n_test, s, cfg.domain) for d, s in cfg.runs]
        # feature-major: [R, features, points]
        self.x_train, self.y_train, self.x_test, self.y_test = (torch.stack(t).transpose(1, 2).contiguous().to(cfg.device)
                                                                for t in zip(*data))
        self.model = create_model(cfg.arch, [s for _, s in cfg.runs], width=cfg.width, depth=cfg.depth,
                                  activation=cfg.activation, topology=cfg.topology, tau=cfg.tau,
                                  normalisation=cfg.normalisation).to(cfg.device)
        self.opt = RunAdam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.gens = [torch.Generator().manual_seed(2_000_003 + s) for _, s in cfg.runs]  # batch order per run
        self.steps = torch.zeros(self.n_runs, dtype=torch.long)
        self.samples = torch.zeros(self.n_runs, dtype=torch.long)
        self.bad = torch.zeros(self.n_runs, dtype=torch.bool)  # diverged: non-finite loss seen; no more updates
        self.state = {}  # paradigm state that must survive a restart (tensors only)

    def batches(self):
        """One pass over the training set, each run in its own shuffled order."""
        n, bs = self.cfg.n_train, self.cfg.batch_size
        idx = torch.stack([torch.randperm(n, generator=g) for g in self.gens]).to(self.cfg.device)
        for k in range(0, n, bs):
            b = idx[:, None, k:k + bs]
            yield (self.x_train.gather(2, b.expand(-1, self.x_train.shape[1], -1)),
                   self.y_train.gather(2, b.expand(-1, self.y_train.shape[1], -1)))

    def loss_at(self, h, y):
        """Per-run loss [R] of the shared head on representation h."""
        return (self.model.head(h) - y).pow(2).mean(dim=(1, 2))

    def loss(self, x, y, depth=None, metric=False):
        """Per-run MSE [R] at `depth` (None = full); with metric=True also the batch metric (higher is better)."""
        mse = (self.model(x, depth) - y).pow(2).mean(dim=(1, 2))
        return (mse, -mse.detach()) if metric else mse

    def step(self, losses, params, runs=None):
        """Backward of the summed per-run losses into `params` only, then one optimizer step on the runs in the
        mask `runs` (None = all). Everything outside `params` and `runs` is left exactly as it was."""
        nonfinite = ~torch.isfinite(losses.detach()).cpu()
        self.bad |= nonfinite if runs is None else nonfinite & runs.cpu()  # only the losses the runs step on count
        if self.bad.any():
            runs = ~self.bad if runs is None else runs & ~self.bad
        if runs is not None and not runs.any():
            return
        self.opt.zero_grad()
        (losses if runs is None else losses[runs.to(losses.device)]).sum().backward(inputs=params)
        self.opt.step(params, None if runs is None else runs.to(losses.device))
        taken = torch.ones(self.n_runs, dtype=torch.long) if runs is None else runs.long()
        self.steps += taken
        self.samples += taken * self.cfg.batch_size

    @torch.no_grad()
    def evaluate(self, x, y):
        """{depth: (mse [R], mae [R])} at every depth 1..L through the shared head."""
        out = {}
        for d, h in enumerate(self.model.features(x), start=1):
            err = self.model.head(h) - y
            out[d] = (err.pow(2).mean(dim=(1, 2)).cpu(), err.abs().mean(dim=(1, 2)).cpu())
        return out

    def checkpoint(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "gens": [g.get_state() for g in self.gens],
                "steps": self.steps, "samples": self.samples, "bad": self.bad, "state": self.state}

    def restore(self, ck):
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["opt"])
        for g, s in zip(self.gens, ck["gens"]):
            g.set_state(s)
        self.steps, self.samples, self.bad, self.state = ck["steps"], ck["samples"], ck["bad"], ck["state"]


def default_ckpt_dir(out):
    """checkpoints/<out>, never inside `out`: an absolute out (or one with '..') is taken relative to the working
    directory when it lies inside it (so 'results/x' and '$PWD/results/x' share a checkpoint), else to its anchor."""
    out = Path(out)
    if out.is_absolute() or ".." in out.parts:
        out = Path(os.path.abspath(out))
        try:
            out = out.relative_to(os.getcwd())
        except ValueError:
            out = out.relative_to(out.anchor)
    return Path("checkpoints") / out


def train(cfg, out, ckpt_dir=None, log=None):
    """Train cfg's group of runs, write the outputs to `out`; returns the per-run status list."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out)
    ckpt = Path(ckpt_dir or default_ckpt_dir(out)) / "last.pt"
    torch.set_num_threads(cfg.threads)
    paradigm = get_paradigm(cfg.paradigm)
    ctx = Context(cfg)
    start, epoch0, wall0, history, diverged_at = io.now(), 0, 0.0, [], [None] * ctx.n_runs
    if ckpt.exists():
        ck = torch.load(ckpt, weights_only=True)
        try:
            if ck["config"] != cfg.to_dict():
                raise ValueError("it was made with another config")
            ctx.restore(ck)
        except (ValueError, RuntimeError, KeyError) as e:
            log(f"[{cfg.exp}/{cfg.paradigm}] starting afresh, not resuming from {ckpt}: {str(e).splitlines()[0]}")
            ctx = Context(cfg)
        else:
            epoch0, wall0, history, diverged_at, start = ck["epoch"], ck["wall_s"], ck["history"], ck["diverged_at"], ck["start"]
            log(f"[{cfg.exp}/{cfg.paradigm}] resuming from {ckpt} at epoch {epoch0}")
    t0, last_ck = time.perf_counter() - wall0, time.perf_counter()
    n_params = sum(p[0].numel() for p in ctx.model.parameters())
    log(f"[{cfg.exp}/{cfg.paradigm}] {ctx.n_runs} runs x {n_params} params, {cfg.epochs} epochs of {math.ceil(cfg.n_train / cfg.batch_size)} batches")
    for epoch in range(epoch0, cfg.epochs):
        ctx.opt.lr = cosine_lr(cfg.lr, epoch, cfg.epochs, cfg.warmup_epochs, cfg.final_lr_frac)
        paradigm(ctx, epoch)
        wall = time.perf_counter() - t0
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs or ctx.bad.all():
            history += history_rows(ctx, epoch + 1, wall)  # also marks runs whose full-depth error is non-finite
            test = [row[-1] for row in history[-3 * ctx.n_runs:] if row[-2] == "test_mse"]
            eta = wall / (epoch + 1 - epoch0) * (cfg.epochs - epoch - 1) if epoch + 1 > epoch0 else 0
            log(f"[{cfg.exp}/{cfg.paradigm}] epoch {epoch + 1}/{cfg.epochs}  test mse (median of runs) "
                f"{np.nanmedian(test) if np.isfinite(test).any() else float('nan'):.4g}  {wall:.0f}s  eta {eta:.0f}s")
        for r in range(ctx.n_runs):
            if ctx.bad[r] and diverged_at[r] is None:
                diverged_at[r] = epoch + 1
                log(f"[{cfg.exp}/{cfg.paradigm}] run {cfg.runs[r]} diverged in epoch {epoch + 1}")
        if ctx.bad.all():
            log(f"[{cfg.exp}/{cfg.paradigm}] every run diverged; stopping")
            break
        if time.perf_counter() - last_ck >= cfg.ckpt_every_s or epoch + 1 == cfg.epochs:
            io.save_torch(ckpt, {**ctx.checkpoint(), "config": cfg.to_dict(), "epoch": epoch + 1, "wall_s": wall,
                                 "history": history, "diverged_at": diverged_at, "start": start})
            last_ck = time.perf_counter()
    return write_outputs(ctx, out, history, diverged_at, start, time.perf_counter() - t0, n_params)


def run_keys(cfg, r):
    d, s = cfg.runs[r]
    return [cfg.exp, d, cfg.arch, cfg.paradigm, s]


def history_rows(ctx, epoch, wall):
    cfg, rows = ctx.cfg, []
    test = ctx.evaluate(ctx.x_test, ctx.y_test)[cfg.depth]
    train = ctx.evaluate(ctx.x_train, ctx.y_train)[cfg.depth]
    # a last step can blow a run up after the last loss it saw: non-finite error now = diverged
    ctx.bad |= ~(torch.isfinite(test[0]) & torch.isfinite(train[0]))
    for r in range(ctx.n_runs):
        pre = run_keys(cfg, r) + [epoch, int(ctx.steps[r]), int(ctx.samples[r]), round(wall, 3), ctx.opt.lr]
        for name, val in (("train_mse", train[0][r]), ("test_mse", test[0][r]), ("test_mae", test[1][r])):
            rows.append(pre + [name, float("nan") if ctx.bad[r] else float(val)])
    return rows


def write_outputs(ctx, out, history, diverged_at, start, wall, n_params):
    cfg, L = ctx.cfg, ctx.cfg.depth
    status = ["diverged" if d is not None else "ok" for d in diverged_at]
    test = ctx.evaluate(ctx.x_test, ctx.y_test)
    layerwise = [run_keys(cfg, r) + [d, m, float("nan") if ctx.bad[r] else float(test[d][k][r]), status[r]]
                 for r in range(ctx.n_runs) for d in range(1, L + 1) for k, m in enumerate(("mse", "mae"))]
    eff = ctx.state.get("depth", torch.full((ctx.n_runs,), L))
    summary = [run_keys(cfg, r) + [status[r], diverged_at[r] or "", int(ctx.steps[r]), int(ctx.samples[r]), round(wall, 3),
                                   L, int(eff[r]), round(100 * (1 - int(eff[r]) / L), 2), n_params] for r in range(ctx.n_runs)]
    axis, pts = grid(cfg.grid, cfg.domain)
    with torch.no_grad():
        feats = ctx.model.features(pts.T.to(cfg.device).expand(ctx.n_runs, -1, -1).contiguous())
        pred = torch.stack([ctx.model.head(h)[:, 0] for h in feats], dim=1).cpu()
    truth = torch.stack([surface(d, pts)[:, 0] for d, _ in cfg.runs])
    io.write_npz(out / "grid.npz", axis=axis.numpy(), pred=pred.reshape(ctx.n_runs, L, cfg.grid, cfg.grid).half().numpy(),
                 truth=truth.reshape(ctx.n_runs, cfg.grid, cfg.grid).numpy(), datasets=np.array([d for d, _ in cfg.runs]),
                 seeds=np.array([s for _, s in cfg.runs]), status=np.array(status))
    io.write_csv(out / "layerwise.csv", KEYS + ["depth", "metric", "value", "status"], layerwise)
    io.write_csv(out / "history.csv", KEYS + ["epoch", "steps", "samples", "wall_s", "lr", "metric", "value"], history)
    io.write_csv(out / "summary.csv", KEYS + ["status", "diverged_epoch", "steps", "samples", "wall_s", "n_blocks",
                                              "effective_depth", "reduction_pct", "params_per_run"], summary)
    io.write_json(out / "run.json", {"config": cfg.to_dict(), **io.provenance(cfg.device), "start": start, "end": io.now(),
                                     "wall_s": round(wall, 3), "runs": [dict(zip(["dataset", "seed"], k), status=s)
                                                                         for k, s in zip(cfg.runs, status)]})
    io.write_csv(out / "coeffs.csv", KEYS + ["topology", "j", "i", "p"],  # shortcut coefficients (NaN: diverged run)
                 [run_keys(cfg, r) + [cfg.topology, j, i, float("nan") if ctx.bad[r] else p] for r, j, i, p in coefficients(ctx.model)])
    return status
