"""The task base: what every task shares, written once. The surface task (lpa_core.surfaces.SurfaceTask) is a task
with R runs trained as one vectorised model; the one-run tasks (images: lpa_core.vision.VisionTask; text:
lpa_core.lm.LMTask, through OneRunTask) have R = 1.

Shared here: the per-run counters (steps, samples, bad: tensors [R]), `step` (divergence, run masks, counters and
a progress line at most every PROGRESS_S seconds through `log`, which lpa_core.train sets to the job's) around the
task's own `update` (backward and optimizer step), checkpoint and resume, the rows of pruned.csv (LayerDrop's
pruned sub-networks), and compute accounting: per run, cumulative analytic training FLOPs (`flops`, float64 [R]).

FLOPs: the model adds the forward FLOPs of what it computes in training, per layer (lpa_core.models.ResidualStack.count:
2 x weight-matrix elements per example, matmuls only; a block a run drops is not counted for that run); each step then
adds, per stepping run, F (every forward FLOP since the last step) + the backward: the input gradient through every
layer above the lowest layer the step trains (a frozen prefix below it gets none) and the weight gradient of each
layer it trains, each costing that layer's forward. Simultaneous: 3 F - stem per example; a frozen block between
trained layers (Sequential's earlier blocks under its trained stem) passes the gradient on but gets no weight
gradient. Evaluation is never counted (`uncounted`). A task sets cfg, n_runs, model, opt (state_dict/load_state_dict), gens (its data
generators), lr (through set_lr), calls `counters()` and implements `update(losses, params, runs, blocks)`; a task whose
`loss` can return a Deferred (forward, backward and update in one call at the step) also `fused(loss, params, runs)`,
which returns the runs that stepped (None = all).
"""
import contextlib
import sys
import time

import torch

from lpa_core import io
from lpa_core.models import PRUNE_RATES, keep_pattern

PROGRESS_S = 60.0
KEYS = ["exp", "dataset", "arch", "paradigm", "seed"]
HISTORY = KEYS + ["epoch", "steps", "samples", "flops", "wall_s", "lr", "metric", "value"]
SUMMARY = KEYS + ["status", "diverged_epoch", "steps", "samples", "flops", "wall_s", "n_blocks", "effective_depth",
                  "reduction_pct", "params_per_run", "base_lr"]
PRUNED = KEYS + ["rate", "blocks_kept", "metric", "value", "status"]  # layerdrop runs: LayerDrop's pruned sub-networks


def weighted_sum(terms, weights=None):
    """terms[0] w0 + terms[1] w1 + ..., in that order; a weight of 1 (the default) multiplies nothing."""
    loss = None
    for term, w in zip(terms, weights or [1] * len(terms)):
        term = term if w == 1 else w * term
        loss = term if loss is None else loss + term
    return loss


class Deferred:
    """A loss whose forward the task runs inside `step`, with the divergence check, the backward and the update, in
    one call (`Task.fused`): a task's `loss` may return one where it has such a path. `now()`: the loss itself, for
    a step that cannot take it whole (layer dropout's block masks)."""
    last = None  # after the step: the loss of each run that took it [R]

    def now(self):
        raise NotImplementedError


class Task:
    log = staticmethod(lambda msg: print(msg, file=sys.stderr, flush=True))

    def counters(self):
        self.steps = torch.zeros(self.n_runs, dtype=torch.long)
        self.samples = torch.zeros(self.n_runs, dtype=torch.long)
        self.bad = torch.zeros(self.n_runs, dtype=torch.bool)  # diverged: non-finite loss seen; no more updates
        self.flops = torch.zeros(self.n_runs, dtype=torch.float64)  # training FLOPs, forward + backward (module doc)
        self.model.counting(True)
        self.layer_of = {id(p): k for k, mod in enumerate(self.model.layers()) for p in mod.parameters()}
        self._bwd = {}
        self.state = {}  # paradigm state that must survive a restart (tensors only)
        self.batch_n = self.cfg.batch_size  # examples in the current batch (a task with a partial last batch sets it)
        self._beat = time.perf_counter()

    def step(self, losses, params, runs=None, blocks=None):
        """One update of `params` on the summed per-run losses, for the runs in the bool mask `runs` [R] (None = all)
        and, with `blocks` [R, L] (layer dropout), only the blocks each run kept. Everything outside is left exactly
        as it was. A run whose loss (among those it steps on) is non-finite is marked bad and never updates again."""
        if isinstance(losses, Deferred) and blocks is None:  # forward, divergence check, backward, update: one call
            runs = self.fused(losses, params, runs)
        else:
            losses = losses.now() if isinstance(losses, Deferred) else losses
            if runs is not None or bool(self.bad.any()) or not bool(torch.isfinite(losses.detach()).all()):  # else: all step
                nonfinite = ~torch.isfinite(losses.detach()).cpu()
                runs = None if runs is None else runs.cpu()
                self.bad |= nonfinite if runs is None else nonfinite & runs
                if self.bad.any():
                    runs = ~self.bad if runs is None else runs & ~self.bad
            if runs is None or runs.any():
                self.update(losses, params, runs, blocks)
        if runs is not None and not runs.any():
            return
        taken = 1 if runs is None else runs.long()
        self.steps += taken
        self.samples += taken * self.batch_n
        fwd, m = self.model.flop_all, self.model
        if fwd is not None:
            above, trained = self.backward_layers(params)
            total = sum(fwd) + sum(fwd[above:]) + sum(fwd[t] for t in trained)
            if m.flop_runs is not None:  # per-run forwards (layer dropout)
                f = m.flop_runs
                total = total + f.sum(1) + f[:, above:].sum(1) + f[:, trained].sum(1)
            if runs is None:
                self.flops += total
            else:
                self.flops += taken * total
            m.counting(True)
        if time.perf_counter() - self._beat >= PROGRESS_S:
            self._beat = time.perf_counter()
            lr = f"{self.lr:.3g}" if not torch.is_tensor(self.lr) else f"{float(self.lr.min()):.3g}..{float(self.lr.max()):.3g}"
            loss = losses.last if isinstance(losses, Deferred) else losses.detach()
            self.log(f"[{self.cfg.exp}/{self.cfg.paradigm}]   step {int(self.steps.max())}  lr {lr}  loss {float(loss.sum()):.4g}")

    def checkpoint(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "gens": [g.get_state() for g in self.gens],
                "steps": self.steps, "samples": self.samples, "flops": self.flops, "bad": self.bad, "state": self.state, "lr": self.lr}

    def restore(self, ck):
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["opt"])
        for g, s in zip(self.gens, ck["gens"], strict=True):
            g.set_state(s)
        self.steps, self.samples, self.bad, self.state = ck["steps"], ck["samples"], ck["bad"], ck["state"]
        self.flops = ck.get("flops", torch.zeros(self.n_runs, dtype=torch.float64))  # a checkpoint from before the counter
        self.set_lr(ck["lr"])

    def backward_layers(self, params):
        """(first layer the input gradient passes through, the layers whose weights get gradients) of a step on params."""
        key = tuple(id(p) for p in params)
        if key not in self._bwd:
            trained = sorted({self.layer_of[id(p)] for p in params})
            self._bwd[key] = (trained[0] + 1, trained)
        return self._bwd[key]

    def exits(self, x, y, depths, weights=None):
        """Per-run loss [R]: sum over `depths` (increasing) of weight x the loss through the shared head at that
        depth, from one forward (deep supervision, LayerSkip's early exits); weights default to 1."""
        hs = self.model.features(x, depths[-1])
        return weighted_sum([self.loss_at(hs[d - 1], y) for d in depths], weights)

    @contextlib.contextmanager
    def uncounted(self):
        """Forwards inside (evaluation, figures) add no FLOPs."""
        on = self.model.flop_all is not None
        self.model.counting(False)
        try:
            yield
        finally:
            self.model.counting(on)

    def counts(self, r):
        """Run r's [steps, samples, flops] (history rows)."""
        return [int(self.steps[r]), int(self.samples[r]), float(self.flops[r])]

    def pruned(self, keys, status, metrics):
        """pruned.csv rows: the full-depth `metrics()` ({name: per-run values [R]}) of LayerDrop's pruned
        sub-networks (lpa_core.models.keep_pattern at each of PRUNE_RATES: the dropped blocks skipped, the shared
        head on top), one row per run, rate and metric; keys(r) and status[r] name run r."""
        rows = []
        for rate in PRUNE_RATES:
            keep = keep_pattern(self.model.depth, rate)
            with self.model.dropping(keep):
                values = metrics()
            rows += [keys(r) + [rate, sum(keep), m, float("nan") if self.bad[r] else float(v[r]), status[r]]
                     for r in range(self.n_runs) for m, v in values.items()]
        return rows


class OneRunTask(Task):
    """A task of one run on a torch.optim optimizer. A subclass calls `init_run(cfg)`, sets model, opt, gen (its
    data generator) and lr, and calls `counters()`."""
    n_runs = 1

    def init_run(self, cfg):
        """The run's cfg, (dataset, seed) and device; bf16 autocast (amp) on CUDA under precision auto and on any
        device under bf16 (CPU: the same autocast code, torch's CPU bf16); TF32 matmuls on CUDA."""
        self.cfg = cfg
        (self.dataset, self.seed), = cfg.runs
        self.device = torch.device(cfg.device)
        self.amp = cfg.precision == "bf16" or (self.device.type == "cuda" and cfg.precision == "auto")
        self.precision = "bf16" if self.amp else "fp32"  # recorded in run.json and inference.csv
        torch.backends.cuda.matmul.allow_tf32 |= self.device.type == "cuda"

    @property
    def gens(self):
        return [self.gen]

    def update(self, losses, params, runs, blocks):
        """Backward of the loss into `params` only (every other parameter keeps grad None, so torch.optim skips
        it: no gradient, weight decay or moment update), then one optimizer step. With one run, `params` already
        holds just the kept blocks (blocks is never needed)."""
        self.opt.zero_grad(set_to_none=True)
        losses.sum().backward(inputs=params)
        self.opt.step()

    def set_lr(self, lr):
        self.lr = lr
        for group in self.opt.param_groups:
            group["lr"] = lr

    def write_pruned(self, out, keys, status, metrics):
        """layerdrop runs: pruned.csv from the full-depth `metrics()` ({name: value}) of the pruned sub-networks."""
        io.write_csv(out / "pruned.csv", PRUNED, self.pruned(lambda r: keys, [status], lambda: {k: [v] for k, v in metrics().items()}))
