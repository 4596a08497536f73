"""What the one-run tasks share (images: lpa_core.vision.VisionTask; text: lpa_core.lm.LMTask): the per-run
counters, the optimizer step that keeps inactive blocks untouched, the learning rate, checkpoint and resume.
A subclass calls `init_run(cfg)`, sets model, opt (a torch.optim optimizer), gen (its data generator) and lr, and calls
`counters()`. Per-run tensors have shape [1]. Within an epoch, `step` logs a progress line (steps, lr, loss) at most
every PROGRESS_S seconds through `log` (lpa_core.train sets the job's), so a long CPU epoch is never silent."""
import sys
import time

import torch

from lpa_core import io


PROGRESS_S = 60.0


class OneRunTask:
    n_runs = 1
    log = staticmethod(lambda msg: print(msg, file=sys.stderr, flush=True))

    def init_run(self, cfg):
        """The run's cfg, (dataset, seed) and device; bf16 autocast on CUDA unless precision says fp32; TF32 matmuls."""
        self.cfg = cfg
        (self.dataset, self.seed), = cfg.runs
        self.device = torch.device(cfg.device)
        self.amp = self.device.type == "cuda" and cfg.precision == "auto"
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True

    def counters(self):
        self.steps = torch.zeros(1, dtype=torch.long)
        self.samples = torch.zeros(1, dtype=torch.long)
        self.bad = torch.zeros(1, dtype=torch.bool)
        self.state = {}
        self._beat = time.perf_counter()

    def step(self, losses, params, runs=None, blocks=None):
        """Backward of the loss into `params` only (every other parameter keeps grad None, so torch.optim skips
        it: no gradient, weight decay or moment update), then one optimizer step. runs: a bool mask [1] (False:
        no step); blocks (layer dropout, [1, L]): with one run, `params` already holds just the kept blocks."""
        nonfinite = ~torch.isfinite(losses.detach()).cpu()
        runs = None if runs is None else runs.cpu()
        self.bad |= nonfinite if runs is None else nonfinite & runs
        active = ~self.bad if runs is None else runs & ~self.bad
        if not active.any():
            return
        self.opt.zero_grad(set_to_none=True)
        losses.sum().backward(inputs=params)
        self.opt.step()
        self.steps += active.long()
        self.samples += active.long() * self.cfg.batch_size
        if time.perf_counter() - self._beat >= PROGRESS_S:
            self._beat = time.perf_counter()
            self.log(f"[{self.cfg.exp}/{self.cfg.paradigm}]   step {int(self.steps)}  lr {self.lr:.3g}  "
                     f"loss {float(losses.detach().sum()):.4g}")

    def set_lr(self, lr):
        self.lr = lr
        for group in self.opt.param_groups:
            group["lr"] = lr

    def checkpoint(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "gen": self.gen.get_state(),
                "steps": self.steps, "samples": self.samples, "bad": self.bad, "state": self.state, "lr": self.lr}

    def restore(self, ck):
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["opt"])
        self.gen.set_state(ck["gen"])
        self.steps, self.samples, self.bad, self.state = ck["steps"], ck["samples"], ck["bad"], ck["state"]
        self.set_lr(ck["lr"])

    def write_pruned(self, out, keys, status, metrics):
        """layerdrop runs: pruned.csv, the full-depth `metrics()` ({name: value}) of LayerDrop's pruned
        sub-networks (lpa_core.models.keep_pattern, one row per rate and metric)."""
        from lpa_core.models import PRUNE_RATES, keep_pattern
        from lpa_core.surfaces import PRUNED

        rows, bad = [], bool(self.bad[0])
        for rate in PRUNE_RATES:
            keep = keep_pattern(self.model.depth, rate)
            with self.model.dropping(keep):
                values = metrics()
            rows += [keys + [rate, sum(keep), m, float("nan") if bad else v, status] for m, v in values.items()]
        io.write_csv(out / "pruned.csv", PRUNED, rows)
