"""Adam(W) over run-stacked parameters, with per-run and per-parameter masks, as a few ops per contiguous span.

All parameters (leading axis = run) are re-pointed into one flat buffer [R, P] and their .grad into another, in
the order given (the surface task puts head and stem first, then the blocks, so the parameters of a prefix step
at any depth are one contiguous span). `step(params, runs, blocks)` updates only the listed parameters, only the
runs in the boolean mask `runs` [R] (None = all) and, where `blocks` [R, n_groups] is given (layer dropout), only
the groups (blocks) each run keeps: every other element keeps its value, its moments and its step count bit for
bit, so an inactive block gets no update from the gradient, weight decay or momentum. A step touches only the
spans of its parameters: in place where every run steps, through one `where` per buffer where a mask applies.
Step counts are per element, so each run's bias correction is what it would be if it trained alone. Arithmetic
as torch.optim.Adam (weight_decay, decoupled=False) and torch.optim.AdamW (decoupled=True). `lr` is one rate, or
per-run rates (a float64 tensor [R]: learning-rate trials, lpa_core.tune), each rounded to the parameters' dtype
as a Python rate is, so a run steps bit for bit as it would alone at its own rate.
"""
import math
import warnings

import torch

from lpa_core import kernels

# grads are views of one flat buffer; autograd's layout check warns on size-1 dims of such views (harmless)
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")


class RunAdam:
    """`groups`: optional list of parameter lists (a block's parameters each) that `step`'s `blocks` mask refers
    to; parameters in no group are always in."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=True, groups=()):
        self.params, self.lr, self.betas, self.eps = list(params), lr, betas, eps
        self.weight_decay, self.decoupled = weight_decay, decoupled
        R = self.params[0].shape[0]
        sizes = [p[0].numel() for p in self.params]
        self.flat = torch.cat([p.detach().reshape(R, -1) for p in self.params], dim=1)
        self.grad = torch.zeros_like(self.flat)
        self.slices, off = {}, 0
        for p, n in zip(self.params, sizes):
            p.data = self.flat[:, off:off + n].view_as(p)
            p.grad = self.grad[:, off:off + n].view_as(p)  # backward accumulates in place into this view
            self.slices[p] = (off, off + n)
            off += n
        self.m, self.v = torch.zeros_like(self.flat), torch.zeros_like(self.flat)
        self.b1t, self.b2t = torch.ones_like(self.flat), torch.ones_like(self.flat)  # beta**t, t = element's steps
        self.layout = torch.tensor(sizes)  # checkpoints of another parameter order are refused (load_state_dict)
        self.group_of = torch.full((off,), len(groups), dtype=torch.long, device=self.flat.device)  # column -> group
        for k, group in enumerate(groups):
            for p in group:
                self.group_of[slice(*self.slices[p])] = k
        self.n_steps = 0  # optimizer steps taken (a loss computed before the last step is stale)
        self._spans, self._per_run = {}, None

    def zero_grad(self):
        self.grad.zero_()

    def spans(self, params):
        """The contiguous column ranges [(a, b), ...] of the flat buffer that hold `params` (cached per set)."""
        key = tuple(id(p) for p in params)
        if key not in self._spans:
            cols = sorted(self.slices[p] for p in params)
            spans = [list(cols[0])]
            for a, b in cols[1:]:
                if a == spans[-1][1]:
                    spans[-1][1] = b
                else:
                    spans.append([a, b])
            self._spans[key] = [slice(a, b) for a, b in spans]
        return self._spans[key]

    def rates(self):
        """(lr, decay) of this step: floats, or per run columns [R, 1] in the parameters' dtype (decay computed in
        float64 first)."""
        decay = 1 - self.lr * self.weight_decay if self.weight_decay and self.decoupled else 1.0
        lr = self.lr
        if torch.is_tensor(lr):
            lr, decay = (t.to(self.flat.dtype).to(self.flat.device)[:, None] if torch.is_tensor(t) else t for t in (lr, decay))
        return lr, decay

    @torch.no_grad()
    def step(self, params, runs=None, blocks=None):
        b1, b2 = self.betas
        lr, decay = self.rates()
        self.n_steps += 1
        keep = None if blocks is None else torch.cat([blocks, blocks.new_ones(blocks.shape[0], 1)], 1)
        if kernels.available(self.flat):  # the same arithmetic in one compiled loop (lpa_core.kernels)
            return kernels.adam(self, self.spans(params), runs, keep, *self.per_run(lr, decay))
        for cols in self.spans(params):
            p, g, m, v, b1t, b2t = (t[:, cols] for t in (self.flat, self.grad, self.m, self.v, self.b1t, self.b2t))
            act = None if runs is None else runs[:, None]
            if keep is not None:
                act = keep[:, self.group_of[cols]] if act is None else act & keep[:, self.group_of[cols]]
            if self.weight_decay and not self.decoupled:
                g = g + self.weight_decay * p
            if act is None:  # in place; the same arithmetic as the masked branch
                b1t.mul_(b1), b2t.mul_(b2), m.lerp_(g, 1 - b1), v.mul_(b2).add_((1 - b2) * g * g)
                upd = (m / (1 - b1t)) / ((v / (1 - b2t)).sqrt() + self.eps)
                (p.mul_(decay) if torch.is_tensor(decay) or decay != 1.0 else p).sub_(lr * upd)
                continue
            put = lambda buf, new: buf.copy_(torch.where(act, new, buf))  # noqa: E731
            put(b1t, b1t * b1)
            put(b2t, b2t * b2)
            put(m, torch.lerp(m, g, 1 - b1))
            put(v, v * b2 + (1 - b2) * g * g)
            upd = (m / (1 - b1t)) / ((v / (1 - b2t)).sqrt() + self.eps)
            put(p, (p * decay if torch.is_tensor(decay) or decay != 1.0 else p) - lr * upd)

    def per_run(self, lr, decay):
        """lr and decay as tensors [R] in the parameters' dtype (the kernels' arguments), made again only when the
        rate changes."""
        if self._per_run is None or self._per_run[0] is not self.lr:
            col = lambda t: (t if torch.is_tensor(t) else torch.tensor([t], dtype=torch.float64)).to(self.flat.dtype).reshape(-1).expand(len(self.flat)).contiguous()  # noqa: E731
            self._per_run = (self.lr, col(lr), col(decay))
        return self._per_run[1:]

    def state_dict(self):
        return {"lr": self.lr, "b1t": self.b1t, "b2t": self.b2t, "m": self.m, "v": self.v, "layout": self.layout}

    def load_state_dict(self, sd):
        if "layout" not in sd or not torch.equal(sd["layout"], self.layout):
            raise ValueError("its optimizer state has another parameter layout")
        self.lr = sd["lr"]
        for k in ("b1t", "b2t", "m", "v"):
            getattr(self, k).copy_(sd[k])


def cosine_lr(base, epoch, epochs, warmup=0, final_frac=0.0):
    """LR for `epoch` (0-based): linear warm-up over `warmup` epochs, then cosine to base*final_frac."""
    if epoch < warmup:
        return base * (epoch + 1) / warmup
    t = (epoch - warmup) / max(1, epochs - warmup)
    return base * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * t)))
