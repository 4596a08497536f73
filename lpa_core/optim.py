"""Adam(W) over run-stacked parameters, with per-run and per-parameter masks, as ~20 whole-buffer ops.

All parameters (leading axis = run) are re-pointed into one flat buffer [R, P] and their .grad into another, so
an update is a handful of elementwise ops on [R, P] whatever the model's layer count (tiny models are bound by
per-op overhead, not arithmetic). `step(params, runs)` updates only the listed parameters and only the runs in
the boolean mask `runs` [R] (None = all): every other element keeps its value, its moments and its step count
bit for bit, so an inactive block gets no update from the gradient, weight decay or momentum. Step counts are
per element, so each run's bias correction is what it would be if it trained alone. Arithmetic as
torch.optim.Adam (weight_decay, decoupled=False) and torch.optim.AdamW (decoupled=True).
"""
import math
import warnings

import torch

# grads are views of one flat buffer; autograd's layout check warns on size-1 dims of such views (harmless)
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")


class RunAdam:
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=True):
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
        self._masks = {}

    def zero_grad(self):
        self.grad.zero_()

    def mask(self, params):
        """Bool [P]: the elements of the flat buffer that belong to `params` (cached per parameter set)."""
        key = tuple(id(p) for p in params)
        if key not in self._masks:
            m = torch.zeros(self.flat.shape[1], dtype=torch.bool, device=self.flat.device)
            for p in params:
                m[slice(*self.slices[p])] = True
            self._masks[key] = m
        return self._masks[key]

    @torch.no_grad()
    def step(self, params, runs=None):
        b1, b2 = self.betas
        mask = self.mask(params)
        full = runs is None and bool(mask.all())  # every element steps: plain copies, same arithmetic, no where
        act = mask[None, :] if runs is None else mask[None, :] & runs[:, None]
        put = (lambda buf, new: buf.copy_(new)) if full else (lambda buf, new: buf.copy_(torch.where(act, new, buf)))
        g = self.grad
        if self.weight_decay and not self.decoupled:
            g = g + self.weight_decay * self.flat
        put(self.b1t, self.b1t * b1)
        put(self.b2t, self.b2t * b2)
        put(self.m, torch.lerp(self.m, g, 1 - b1))
        put(self.v, self.v * b2 + (1 - b2) * g * g)
        upd = (self.m / (1 - self.b1t)) / ((self.v / (1 - self.b2t)).sqrt() + self.eps)
        decay = 1 - self.lr * self.weight_decay if self.weight_decay and self.decoupled else 1.0
        put(self.flat, self.flat * decay - self.lr * upd)

    def state_dict(self):
        return {"lr": self.lr, "b1t": self.b1t, "b2t": self.b2t, "m": self.m, "v": self.v}

    def load_state_dict(self, sd):
        self.lr = sd["lr"]
        for k in ("b1t", "b2t", "m", "v"):
            getattr(self, k).copy_(sd[k])


def cosine_lr(base, epoch, epochs, warmup=0, final_frac=0.0):
    """LR for `epoch` (0-based): linear warm-up over `warmup` epochs, then cosine to base*final_frac."""
    if epoch < warmup:
        return base * (epoch + 1) / warmup
    t = (epoch - warmup) / max(1, epochs - warmup)
    return base * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * t)))
