"""The surface task (Table 1, Figures 2/3/8): regression of 2-D surfaces by a group of runs (datasets x seeds)
trained as one vectorised residual MLP (lpa_core.models: run-stacked weights, lpa_core.optim.RunAdam).

The task's outputs, beside the loop's run.json (lpa_core.train): layerwise.csv (test MSE and MAE at every depth),
history.csv (train/test error at full depth per evaluated epoch), summary.csv (one row per run) and grid.npz
(predictions on a plotting grid at every depth, float16, and the truth); layerdrop runs add pruned.csv (test error
of LayerDrop's pruned sub-networks).
"""
import math

import numpy as np
import torch

from lpa_core import io
from lpa_core.data import grid, make_surface, surface
from lpa_core.models import create_model
from lpa_core.optim import RunAdam
from lpa_core.paradigms.layerdrop import PRUNE_RATES, keep_pattern

KEYS = ["exp", "dataset", "arch", "paradigm", "seed"]
HISTORY = KEYS + ["epoch", "steps", "samples", "wall_s", "lr", "metric", "value"]
SUMMARY = KEYS + ["status", "diverged_epoch", "steps", "samples", "wall_s", "n_blocks", "effective_depth",
                  "reduction_pct", "params_per_run"]
PRUNED = KEYS + ["rate", "blocks_kept", "metric", "value", "status"]  # layerdrop runs: LayerDrop's pruned sub-networks


def run_keys(cfg, r):
    d, s = cfg.runs[r]
    return [cfg.exp, d, cfg.arch, cfg.paradigm, s]


class SurfaceTask:
    """What a paradigm sees: the model, the optimizer, this epoch's batches, the loss, and `step`, the one place
    where parameters change. Counters are per run (runs of a group can take different steps: adaptive LPA).
    Also what the loop needs (lpa_core.train): set_lr, history, checkpoint/restore, write_outputs."""

    def __init__(self, cfg):
        self.cfg, self.n_runs = cfg, len(cfg.runs)
        data = [make_surface(d, cfg.n_train, cfg.n_test, s, cfg.domain) for d, s in cfg.runs]
        # feature-major: [R, features, points]
        self.x_train, self.y_train, self.x_test, self.y_test = (torch.stack(t).transpose(1, 2).contiguous().to(cfg.device)
                                                                for t in zip(*data))
        self.model = create_model(cfg.arch, [s for _, s in cfg.runs], width=cfg.width, depth=cfg.depth,
                                  activation=cfg.activation, topology=cfg.topology, tau=cfg.tau,
                                  normalisation=cfg.normalisation, wiring=cfg.wiring).to(cfg.device)
        self.opt = RunAdam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.gens = [torch.Generator().manual_seed(2_000_003 + s) for _, s in cfg.runs]  # batch order per run
        self.steps = torch.zeros(self.n_runs, dtype=torch.long)
        self.samples = torch.zeros(self.n_runs, dtype=torch.long)
        self.bad = torch.zeros(self.n_runs, dtype=torch.bool)  # diverged: non-finite loss seen; no more updates
        self.state = {}  # paradigm state that must survive a restart (tensors only)
        self.n_params = sum(p[0].numel() for p in self.model.parameters())  # per run

    # --- what a paradigm uses -----------------------------------------------------------------------------------

    @property
    def n_batches(self):
        """Batches per epoch (the last one may be partial)."""
        return -(-self.cfg.n_train // self.cfg.batch_size)

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

    # --- what the loop uses -------------------------------------------------------------------------------------

    def describe(self):
        return (f"{self.n_runs} runs x {self.n_params} params, {self.cfg.epochs} epochs of "
                f"{math.ceil(self.cfg.n_train / self.cfg.batch_size)} batches")

    def set_lr(self, lr):
        self.opt.lr = lr

    @torch.no_grad()
    def evaluate(self, x, y):
        """{depth: (mse [R], mae [R])} at every depth 1..L through the shared head."""
        out = {}
        for d, h in enumerate(self.model.features(x), start=1):
            err = self.model.head(h) - y
            out[d] = (err.pow(2).mean(dim=(1, 2)).cpu(), err.abs().mean(dim=(1, 2)).cpu())
        return out

    def history(self, epoch, wall):
        """(history rows at full depth, a short progress text); marks runs whose full-depth error is non-finite."""
        cfg, rows = self.cfg, []
        test = self.evaluate(self.x_test, self.y_test)[cfg.depth]
        train = self.evaluate(self.x_train, self.y_train)[cfg.depth]
        # a last step can blow a run up after the last loss it saw: non-finite error now = diverged
        self.bad |= ~(torch.isfinite(test[0]) & torch.isfinite(train[0]))
        for r in range(self.n_runs):
            pre = run_keys(cfg, r) + [epoch, int(self.steps[r]), int(self.samples[r]), round(wall, 3), self.opt.lr]
            for name, val in (("train_mse", train[0][r]), ("test_mse", test[0][r]), ("test_mae", test[1][r])):
                rows.append(pre + [name, float("nan") if self.bad[r] else float(val)])
        mse = [row[-1] for row in rows if row[-2] == "test_mse"]
        return rows, f"test mse (median of runs) {np.nanmedian(mse) if np.isfinite(mse).any() else float('nan'):.4g}"

    def checkpoint(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "gens": [g.get_state() for g in self.gens],
                "steps": self.steps, "samples": self.samples, "bad": self.bad, "state": self.state}

    def restore(self, ck):
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["opt"])
        for g, s in zip(self.gens, ck["gens"]):
            g.set_state(s)
        self.steps, self.samples, self.bad, self.state = ck["steps"], ck["samples"], ck["bad"], ck["state"]

    def write_outputs(self, out, history, status, diverged_at, wall):
        """grid.npz, layerwise.csv, history.csv, summary.csv (each atomically)."""
        cfg, L, R = self.cfg, self.cfg.depth, self.n_runs
        test = self.evaluate(self.x_test, self.y_test)
        layerwise = [run_keys(cfg, r) + [d, m, float("nan") if self.bad[r] else float(test[d][k][r]), status[r]]
                     for r in range(R) for d in range(1, L + 1) for k, m in enumerate(("mse", "mae"))]
        eff = self.state.get("depth", torch.full((R,), L))
        summary = [run_keys(cfg, r) + [status[r], diverged_at[r] or "", int(self.steps[r]), int(self.samples[r]),
                                       round(wall, 3), L, int(eff[r]), round(100 * (1 - int(eff[r]) / L), 2), self.n_params]
                   for r in range(R)]
        axis, pts = grid(cfg.grid, cfg.domain)
        with torch.no_grad():
            feats = self.model.features(pts.T.to(cfg.device).expand(R, -1, -1).contiguous())
            pred = torch.stack([self.model.head(h)[:, 0] for h in feats], dim=1).cpu()
        truth = torch.stack([surface(d, pts)[:, 0] for d, _ in cfg.runs])
        io.write_npz(out / "grid.npz", axis=axis.numpy(), pred=pred.reshape(R, L, cfg.grid, cfg.grid).half().numpy(),
                     truth=truth.reshape(R, cfg.grid, cfg.grid).numpy(), datasets=np.array([d for d, _ in cfg.runs]),
                     seeds=np.array([s for _, s in cfg.runs]), status=np.array(status))
        io.write_csv(out / "layerwise.csv", KEYS + ["depth", "metric", "value", "status"], layerwise)
        io.write_csv(out / "history.csv", HISTORY, history)
        io.write_csv(out / "summary.csv", SUMMARY, summary)
        if cfg.paradigm == "layerdrop":
            io.write_csv(out / "pruned.csv", PRUNED, self.pruned(status))

    def pruned(self, status):
        """pruned.csv rows: test MSE and MAE of the stack pruned at each of PRUNE_RATES (LayerDrop's every-other
        pruning, lpa_core.paradigms.layerdrop.keep_pattern): the dropped blocks skipped, the shared head on top."""
        rows = []
        for rate in PRUNE_RATES:
            keep = keep_pattern(self.cfg.depth, rate)
            with self.model.dropping(keep):
                err = self.evaluate(self.x_test, self.y_test)[self.cfg.depth]
            rows += [run_keys(self.cfg, r) + [rate, sum(keep), m, float("nan") if self.bad[r] else float(err[k][r]), status[r]]
                     for r in range(self.n_runs) for k, m in enumerate(("mse", "mae"))]
        return rows
