"""The surface task (Table 1, Figures 2/3/8): regression of 2-D surfaces by a group of runs (datasets x seeds)
trained as one vectorised residual MLP (lpa_core.models: run-stacked weights, lpa_core.optim.RunAdam).

The task's outputs, beside the loop's run.json (lpa_core.train): layerwise.csv (test MSE and MAE at every depth),
history.csv (train/test error at full depth per evaluated epoch), summary.csv (one row per run) and grid.npz
(predictions on a plotting grid at every depth, float16, and the truth, for the first cfg.grid_seeds seeds of each
dataset); layerdrop runs add pruned.csv (test error of LayerDrop's pruned sub-networks).

Speed: on the cascade ReLU MLP `loss` (and `exits`, `evaluate`) run the model's fast path: the compiled kernels of
lpa_core.kernels (forward, backward and Adam for every run in one call each; a plain loss's whole step, one run
after another, in one call: `Deferred`, kernels.train; autograd's numbers to rounding) or,
where they cannot be built or LPA_KERNEL=torch, PyTorch ops without autograd (lpa_core.models.ResMLP.tape/backward:
autograd's numbers bit for bit). LPA_FAST=0 in the environment selects autograd (a debugging aid; other topologies
and activations always use it). run.json's `kernel` says which ran; benchmarks/table1_speed.py measures them.
"""
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from lpa_core import io, kernels, tabular, task
from lpa_core.data import grid, make_surface, make_val, surface
from lpa_core.optim import RunAdam
from lpa_core.registry import create_model
from lpa_core.task import HISTORY, KEYS, PRUNED, SUMMARY, Task, weighted_sum  # noqa: F401 (KEYS: read from here by the loop and the one-run tasks)


def run_keys(cfg, r):
    """Run r's key columns: KEYS, and base_lr in a job of learning-rate trials (cfg.lrs: one run per dataset, seed
    and lr; lpa_core.tune)."""
    d, s = cfg.runs[r]
    return [cfg.exp, d, cfg.arch, cfg.paradigm, s] + ([cfg.run_lrs[r]] if cfg.lrs else [])


def key_columns(cfg):
    return KEYS + (["base_lr"] if cfg.lrs else [])


def grid_runs(runs, status, n):
    """Indices of the runs whose predictions grid.npz keeps: per dataset the first n seeds, ok runs first (the
    surface figures draw the first ok seed), in run order; n = 0 keeps every run (TrainConfig.grid_seeds)."""
    keep = []
    for d in dict.fromkeys(d for d, _ in runs):
        mine = [r for r, (rd, _) in enumerate(runs) if rd == d]
        keep += sorted(mine, key=lambda r: status[r] != "ok")[:n or len(mine)]
    return sorted(keep)


class Deferred(task.Deferred):
    """The fast path's loss where the compiled kernels run, no metric is asked and no block is dropped: its forward
    runs inside `step`, with the backward and the update, one run at a time (`SurfaceTask.fused`, kernels.train),
    and its FLOPs are counted there. After the step, `last` holds the MSE of each run that stepped (0 for others)."""
    def __init__(self, ctx, x, y, depth):
        self.ctx, self.x, self.y, self.depth, self.version, self.last = ctx, x, y, depth, ctx.opt.n_steps, None

    def now(self):
        return self.ctx.loss(self.x, self.y, self.depth, defer=False)


class SurfaceTask(Task):
    """What a paradigm sees: the model, the optimizer, this epoch's batches, the loss, and `step` (lpa_core.task),
    the one place where parameters change. Counters are per run (runs of a group can take different steps:
    adaptive LPA). Also what the loop needs (lpa_core.train): set_lr, history, checkpoint/restore, write_outputs."""

    def __init__(self, cfg):
        self.cfg, self.n_runs = cfg, len(cfg.runs)
        self.tabular = tabular.is_tabular(cfg.datasets[0])  # one tabular dataset per job (TrainConfig checks it)
        if self.tabular:  # its input and output sizes, task and splits from the data (lpa_core.tabular)
            data = [tabular.load(d, s) for d, s in cfg.runs]
            self.kind, d_in, d_out = data[0]["kind"], data[0]["d_in"], data[0]["d_out"]
            t = lambda k: torch.as_tensor(np.stack([d[k] for d in data]))  # noqa: E731
            x = [t(f"x_{s}").transpose(1, 2) for s in ("train", "val", "test")]  # feature-major: [R, features, points]
            y = [t(f"y_{s}")[:, None] if self.kind == "classification" else t(f"y_{s}").transpose(1, 2)
                 for s in ("train", "val", "test")]
            (self.x_train, self.x_val, self.x_test), (self.y_train, self.y_val, self.y_test) = (
                [v.contiguous().to(cfg.device) for v in vs] for vs in (x, y))
        else:
            data = [make_surface(d, cfg.n_train, cfg.n_test, s, cfg.domain) + make_val(d, cfg.n_val, s, cfg.domain)
                    for d, s in cfg.runs]
            self.kind, d_in, d_out = "regression", 2, 1
            (self.x_train, self.y_train, self.x_test, self.y_test, self.x_val, self.y_val) = (
                torch.stack(t).transpose(1, 2).contiguous().to(cfg.device) for t in zip(*data))
        self.metrics = ("mse", "mae") if self.kind == "regression" else ("ce", "acc_pct")
        self.n_train = self.x_train.shape[-1]
        self.model = create_model(cfg.arch, seeds=[s for _, s in cfg.runs], d_in=d_in, d_out=d_out, width=cfg.width, depth=cfg.depth,
                                  activation=cfg.activation, topology=cfg.topology, tau=cfg.tau,
                                  normalisation=cfg.normalisation, wiring=cfg.wiring).to(cfg.device)
        m = self.model  # head and stem first: every prefix step's parameters are one span of the flat buffer
        order = [p for mod in (m.head, m.stem, *m.blocks) for p in mod.parameters()]
        self.opt = RunAdam(order, lr=self.lr_value(cfg.run_lrs), weight_decay=cfg.weight_decay, groups=[list(b.parameters()) for b in m.blocks])
        self.fast = m.fast and self.kind == "regression" and os.environ.get("LPA_FAST", "1") != "0"  # hand-written backward (MSE)
        self.kernel = kernels.used(self.x_train) if self.fast else "autograd"  # what trains: c, torch or autograd (run.json)
        self.gens = [torch.Generator().manual_seed(2_000_003 + s) for _, s in cfg.runs]  # batch order per run
        self.lr = self.opt.lr
        self.fuse = True  # a plain loss's whole step in one kernels.train call (False: the calls apart; the same numbers)
        self._want = {}
        self.counters()
        self.n_params = sum(p[0].numel() for p in self.model.parameters())  # per run

    # --- what a paradigm uses -----------------------------------------------------------------------------------

    @property
    def n_batches(self):
        """Batches per epoch (the last one may be partial)."""
        return -(-self.n_train // self.cfg.batch_size)

    def batches(self):
        """One pass over the training set, each run in its own shuffled order."""
        n, bs = self.n_train, self.cfg.batch_size
        idx = torch.stack([torch.randperm(n, generator=g) for g in self.gens]).to(self.cfg.device)
        for k in range(0, n, bs):
            b = idx[:, None, k:k + bs]
            self.batch_n = b.shape[-1]  # the last batch may be partial: samples count what a step saw
            yield (self.x_train.gather(2, b.expand(-1, self.x_train.shape[1], -1)),
                   self.y_train.gather(2, b.expand(-1, self.y_train.shape[1], -1)))

    def loss_at(self, h, y):
        """Per-run loss [R] of the shared head on representation h."""
        self.model.count(self.model.depth + 1, h)
        return self.criterion(self.model.head(h), y)

    def criterion(self, pred, y):
        """Per-run training loss [R]: MSE (regression: pred, y [R, d_out, B]) or cross-entropy (pred [R, C, B],
        labels y [R, 1, B])."""
        if self.kind == "regression":
            return (pred - y).pow(2).mean(dim=(1, 2))
        return F.cross_entropy(pred, y[:, 0], reduction="none").mean(1)

    def loss(self, x, y, depth=None, metric=False, defer=True):
        """Per-run MSE [R] at `depth` (None = full); with metric=True also the batch metric (higher is better).
        On the fast path the loss carries its forward's tape (no autograd graph), or where the compiled kernels run
        and self.fuse is on, no metric is asked, no block is dropped and `defer` holds, it is a Deferred whose
        forward runs inside `step`: hand it to `step` unchanged."""
        if not self.fast:
            loss = self.criterion(self.model(x, depth), y)
            return (loss, -loss.detach()) if metric else loss
        if defer and self.fuse and not metric and self.model.keep is None and kernels.available(x):
            return Deferred(self, x, y, depth)
        pred, tape = self.model.tape(x, depth)
        err = pred - y
        mse = err.pow(2).mean(dim=(1, 2))
        mse.tape = (tape, err * (2.0 / err[0].numel()), self.opt.n_steps)  # d mse / d pred, as autograd computes it
        return (mse, -mse) if metric else mse

    def exits(self, x, y, depths, weights=None):
        """Task.exits; on the fast path with the compiled kernels one forward of every exit, and a tape."""
        if not (self.fast and kernels.available(x)):
            return super().exits(x, y, depths, weights)
        preds, tape = self.model.tape(x, exits=depths)
        err, ws = preds - y, weights or [1] * len(depths)
        loss = weighted_sum(list(err.pow(2).mean(dim=(2, 3))), ws)
        loss.tape = (tape, err * torch.tensor(ws, dtype=err.dtype).view(-1, 1, 1, 1) * (2.0 / err[0, 0].numel()), self.opt.n_steps)
        return loss

    def fused(self, loss, params, runs):
        """Task.step for a Deferred loss, in one kernels.train call: the runs in `runs` (None = all) that are not bad
        take the forward, and where their loss is finite the backward and RunAdam step on `params`; a run whose loss
        is not finite is marked bad instead. Returns the runs that stepped (None = all)."""
        if loss.version != self.opt.n_steps:
            raise RuntimeError("step: this loss was computed before the last optimizer step (compute it again)")
        active = ~self.bad if runs is None else runs.cpu() & ~self.bad
        if not active.any():
            return active
        key = tuple(id(p) for p in params)
        if key not in self._want:  # stem, each block, head: a layer is trained when its weight is in params
            self._want[key] = [id(w) in set(key) for w in self.model.kernel_params[::4] + self.model.kernel_params[-2:-1]]
        m = self.model
        depth = m.depth if loss.depth is None else loss.depth
        m.count(0, loss.x)  # the forward's FLOPs, as ResMLP.tape counts them
        m.count(m.depth + 1, loss.x)
        m.count_blocks(loss.x, [None] * depth)
        loss.last, bad = kernels.train(self.model.kernel_params, loss.x, loss.y, depth, self._want[key], self.opt,
                                       self.opt.spans(params), active)
        self.bad |= bad
        return None if runs is None and not bad.any() and bool(active.all()) else active & ~bad

    def update(self, losses, params, runs, blocks):
        """Backward of the summed losses of the runs in `runs` (None = all) into `params` only, then one RunAdam
        step on those parameters, runs and (with `blocks` [R, L]) the blocks each run kept."""
        dev = losses.device
        tape = getattr(losses, "tape", None)
        if tape is not None:  # fast path: the tape and d sum(loss) / d pred (ctx.loss, ctx.exits)
            tape, g, version = tape
            if version != self.opt.n_steps:
                raise RuntimeError("step: this loss was computed before the last optimizer step (compute it again)")
            self.model.backward(tape, g, {id(p) for p in params})
        elif not losses.requires_grad:
            raise RuntimeError("step: the loss has neither an autograd graph nor a tape: pass ctx.loss's result unchanged")
        else:
            self.opt.zero_grad()
            (losses if runs is None else losses[runs.to(dev)]).sum().backward(inputs=params)
        self.opt.step(params, None if runs is None else runs.to(dev), None if blocks is None else blocks.to(dev))

    # --- what the loop uses -------------------------------------------------------------------------------------

    def describe(self):
        return (f"{self.n_runs} runs x {self.n_params} params, {self.cfg.epochs} epochs of "
                f"{math.ceil(self.n_train / self.cfg.batch_size)} batches ({self.kernel})")

    def lr_value(self, lrs):
        """The optimizer's lr for per-run rates `lrs`: one float where every run has the same (the plain in-place
        step), else a tensor [R] (each run's own rate, lpa_core.optim.RunAdam)."""
        return lrs[0] if len(set(lrs)) == 1 else torch.tensor(lrs, dtype=torch.float64)

    def set_lr(self, lr):
        """lr: one rate for every run, or per-run rates (a list [R], each run's schedule applied to its own base)."""
        self.lr = self.opt.lr = self.lr_value(lr) if isinstance(lr, (list, tuple)) else lr

    def lr_of(self, r):
        return float(self.lr[r]) if torch.is_tensor(self.lr) else self.lr

    @torch.no_grad()
    def predictions(self, x, depths):
        """[(depth, prediction [R, d_out, N])] of the shared head at `depths` (increasing): on the fast path with the
        compiled kernels one forward of every point (lpa_core.models.ResMLP.predict), else the model's features."""
        pred = self.model.predict(x, depths) if self.fast else None
        if pred is not None:
            return list(zip(depths, pred))
        feats = self.model.features(x, depths[-1])
        return [(d, self.model.head(feats[d - 1])) for d in depths]

    @torch.no_grad()
    def evaluate(self, x, y, depths=None):
        """{depth: (metric [R] for each of self.metrics)} at `depths` (default every depth 1..L) through the shared
        head: (mse, mae) or (ce, acc_pct)."""
        out = {}
        for d, pred in self.predictions(x, list(depths or range(1, self.model.depth + 1))):
            if self.kind == "regression":
                err = pred - y
                out[d] = (err.pow(2).mean(dim=(1, 2)).cpu(), err.abs().mean(dim=(1, 2)).cpu())
            else:
                acc = 100 * (pred.argmax(1) == y[:, 0]).float().mean(1)
                out[d] = (self.criterion(pred, y).cpu(), acc.cpu())
        return out

    def history(self, epoch, wall):
        """(history rows at full depth, a short progress text); marks runs whose full-depth error is non-finite."""
        cfg, rows = self.cfg, []
        (m1, m2), L = self.metrics, cfg.depth
        test = self.evaluate(self.x_test, self.y_test, [L])[L]
        train = self.evaluate(self.x_train, self.y_train, [L])[L]
        val = self.evaluate(self.x_val, self.y_val, [L])[L] if self.x_val.shape[-1] else None
        # a last step can blow a run up after the last loss it saw: non-finite error now = diverged
        self.bad |= ~(torch.isfinite(test[0]) & torch.isfinite(train[0]))
        for r in range(self.n_runs):
            pre = run_keys(cfg, r) + [epoch, *self.counts(r), round(wall, 3), self.lr_of(r)]
            vals = [(f"train_{m1}", train[0][r]), (f"test_{m1}", test[0][r]), (f"test_{m2}", test[1][r])]
            vals += [(f"val_{m1}", val[0][r]), (f"val_{m2}", val[1][r])] if val else []
            for name, v in vals:
                rows.append(pre + [name, float("nan") if self.bad[r] else float(v)])
        shown = "val" if val else "test"  # a tuning run's progress shows what its selection reads
        e = [row[-1] for row in rows if row[-2] == f"{shown}_{m1}"]
        return rows, f"{shown} {m1} (median of runs) {np.nanmedian(e) if np.isfinite(e).any() else float('nan'):.4g}"

    def write_outputs(self, out, history, status, diverged_at, wall):
        """grid.npz, layerwise.csv, history.csv, summary.csv (each atomically)."""
        cfg, L, R = self.cfg, self.cfg.depth, self.n_runs
        test = self.evaluate(self.x_test, self.y_test)
        layerwise = [run_keys(cfg, r) + [d, m, float("nan") if self.bad[r] else float(test[d][k][r]), status[r]]
                     for r in range(R) for d in range(1, L + 1) for k, m in enumerate(self.metrics)]
        eff = self.state.get("depth", torch.full((R,), L))
        summary = [run_keys(cfg, r) + [status[r], diverged_at[r] or "", *self.counts(r), round(wall, 3), L, int(eff[r]),
                                       round(100 * (1 - int(eff[r]) / L), 2), self.n_params] + ([] if cfg.lrs else [cfg.run_lrs[r]])
                   for r in range(R)]
        if self.tabular:  # no plane to draw: grid.npz holds no surface (no datasets), so every surface job writes the
            extra = {}  # same files; for regression the full-depth test predictions and truths [R, N, d_out] (the scatter)
            if self.kind == "regression":
                with torch.no_grad():
                    extra = dict(pred_test=self.model(self.x_test).transpose(1, 2).cpu().numpy(),
                                 y_test=self.y_test.transpose(1, 2).cpu().numpy())
            io.write_npz(out / "grid.npz", datasets=np.array([], dtype=str), **extra)
        else:
            self.write_grid(out, status)
        keys = key_columns(cfg)
        io.write_csv(out / "layerwise.csv", keys + ["depth", "metric", "value", "status"], layerwise)
        io.write_csv(out / "history.csv", keys + HISTORY[len(KEYS):], history)
        io.write_csv(out / "summary.csv", keys + SUMMARY[len(KEYS):len(SUMMARY) - bool(cfg.lrs)], summary)  # base_lr once
        if cfg.paradigm == "layerdrop":
            test = lambda: dict(zip(self.metrics, self.evaluate(self.x_test, self.y_test, [L])[L]))  # noqa: E731
            io.write_csv(out / "pruned.csv", keys + PRUNED[len(KEYS):], self.pruned(lambda r: run_keys(cfg, r), status, test))

    def write_grid(self, out, status):
        """grid.npz: every depth's predictions on the plotting grid and the truth (the surface figures)."""
        cfg, L, R = self.cfg, self.cfg.depth, self.n_runs
        axis, pts = grid(cfg.grid, cfg.domain)
        preds = self.predictions(pts.T.to(cfg.device).expand(R, -1, -1).contiguous(), list(range(1, L + 1)))
        pred = torch.stack([p[:, 0] for _, p in preds], dim=1).cpu()
        keep = grid_runs(cfg.runs, status, cfg.grid_seeds)
        truth = torch.stack([surface(cfg.runs[r][0], pts)[:, 0] for r in keep])
        io.write_npz(out / "grid.npz", axis=axis.numpy(), pred=pred[keep].reshape(len(keep), L, cfg.grid, cfg.grid).half().numpy(),
                     truth=truth.reshape(len(keep), cfg.grid, cfg.grid).numpy(), datasets=np.array([cfg.runs[r][0] for r in keep]),
                     seeds=np.array([cfg.runs[r][1] for r in keep]), status=np.array(status)[keep])
