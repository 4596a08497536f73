"""The vision task (Tables 2-4, Figures 4-6/9/10 of the LPA paper): one run (one dataset, one seed) of a ResNet or
ViT (lpa_core.vision_models) classifying images (lpa_core.images), under any paradigm, through the one loop of
lpa_core.train.

Outputs, beside the loop's run.json, each written atomically:
  layerwise.csv   test accuracy (%) and loss at every depth 1..L through the shared head
  history.csv     per evaluated epoch: steps, samples, wall time, lr; train loss/accuracy (fixed 10,000-image
                  subset of the training set, not augmented), validation loss/accuracy (cfg.val_frac > 0: the
                  images held out of the training set, lpa_core.images) and test loss/accuracy, at full depth
  summary.csv     status, compute, effective depth and reduction (Adaptive LPA), parameters in all and at the
                  effective depth
  embeddings.npz  per-depth embeddings (what the head's linear layer sees) of cfg.n_embed fixed test images,
                  float16 [L, n, D], with labels and indices: the t-SNE figure (Fig. 5)
  inference.csv   per depth k: parameters and measured latency of the model truncated to k blocks (Sec 5.4)
  pruned.csv      layerdrop runs only: test accuracy and loss of LayerDrop's pruned sub-networks (every k-th block
                  dropped, lpa_core.paradigms.layerdrop.keep_pattern)

Optimisation: torch.optim, the family's public recipe (RECIPES; the numbers go in the config, the optimizer is
fixed here). Inactive blocks get no update at all: every step zeroes gradients to None and back-propagates only
into the step's parameters, and torch.optim skips a parameter whose grad is None, so it gets no gradient, weight
decay or momentum, and its optimizer state (step count, moments) is untouched (tested bit for bit). BatchNorm
running statistics are buffers, not parameters: a training-mode forward updates those of the blocks it runs
(including blocks a step keeps frozen, as Sequential's earlier blocks), so evaluation normalises with statistics
of what each block now sees; blocks the forward does not reach keep theirs.

On CUDA (cfg.precision 'auto'): bf16 autocast for the forward passes, channels_last for ResNets, cuDNN benchmark
and TF32. The same code runs on a CPU under `precision: bf16` (torch's CPU bf16 autocast) and `memory_format:
channels_last`, so the CPU test suite exercises every line of the GPU path but the CUDA kernels; what is left
branching on the device is one-line flags (cuDNN, TF32, synchronize, pinned memory).
"""
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from lpa_core import io
from lpa_core.cost import vision_layer_flops
from lpa_core.task import OneRunTask
from lpa_core.images import load_images
from lpa_core.registry import create_model
from lpa_core.surfaces import HISTORY, KEYS, SUMMARY
from lpa_core.vision_models import truncate

# Public recipes, one per family; the paper gives only the epochs (ResNet 50, ViT 300).
RECIPES = {
    # Wide ResNet (Zagoruyko & Komodakis 2016, szagoruyko/wide-residual-networks): SGD, Nesterov momentum 0.9,
    # weight decay 5e-4 on every parameter, lr 0.1, batch 128; cosine decay to 0 per epoch as in
    # kuangliu/pytorch-cifar (main.py: SGD lr 0.1, momentum 0.9, 5e-4, CosineAnnealingLR).
    "resnet": dict(optimizer="SGD (Nesterov momentum 0.9)", lr=0.1, weight_decay=5e-4, batch_size=128, epochs=50,
                   warmup_epochs=0, final_lr_frac=0.0),
    # DeiT (Touvron et al. 2021, facebookresearch/deit main.py defaults; ViT-Tiny is DeiT-Ti): AdamW, lr 5e-4 at
    # batch 512 (5e-4 x batch/512), weight decay 0.05 (none on biases, norms, position embedding, class token:
    # timm's no_weight_decay), 5 warm-up epochs, cosine to min_lr 1e-5, 300 epochs. Not taken: label smoothing,
    # drop path, RandAugment, mixup/cutmix, random erasing, repeated augmentation, EMA (we use crop + flip only).
    "vit": dict(optimizer="AdamW (0.9, 0.999)", lr=5e-4, weight_decay=0.05, batch_size=512, epochs=300,
                warmup_epochs=5, final_lr_frac=0.02),
}
TRAIN_EVAL = 10_000  # training images evaluated for history's train loss/accuracy (a fixed subset)
LAYERWISE = KEYS + ["depth", "metric", "value", "status"]
VSUMMARY = SUMMARY + ["params_effective"]
INFERENCE = KEYS + ["depth", "params", "batch", "latency_ms", "images_per_s", "device"]  # device: hardware + precision
_DATA = {}  # loaded datasets, kept for a task re-made in the same process (a checkpoint that does not resume)


def family(arch):
    return "resnet" if arch.startswith("resnet") else "vit"


def make_optimizer(model, arch, lr, weight_decay, shortcut_decay=False):
    """The family's torch.optim optimizer (RECIPES). Shortcut coefficients (lpa_core.topology: `block.shortcut`)
    get no weight decay in either family (our choice: the papers are silent; decay would pull ANCRe's logits
    towards uniform coefficients and the gains towards 0), unless shortcut_decay (the authors' one group)."""
    coeffs = [p for name, p in model.named_parameters() if name.endswith(".shortcut")]
    if shortcut_decay:
        coeffs = []
    if family(arch) == "resnet":
        rest = [p for p in model.parameters() if all(p is not c for c in coeffs)]
        groups = [{"params": rest}] + ([{"params": coeffs, "weight_decay": 0.0}] if coeffs else [])
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    decay, plain = [], []
    for name, p in model.named_parameters():
        wd = shortcut_decay if name.endswith(".shortcut") else p.ndim > 1 and not name.endswith(("pos_embed", "cls_token"))
        (decay if wd else plain).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}], lr=lr)


def _sync(device):
    return torch.cuda.synchronize(device) if device.type == "cuda" else None


@torch.no_grad()
def depth_costs(model, x, repeats=5, warmup=2):
    """Per depth k = 1..L: (k, parameters of the model truncated to k blocks, median latency in ms of one forward
    of the batch x, in eval mode). Parameters are counted, not inferred from a forward."""
    was_training, rows = model.training, []
    model.eval()
    for k in range(1, model.depth + 1):
        net, times = truncate(model, k), []
        with model.autocast():
            for i in range(warmup + repeats):
                _sync(x.device)
                t = time.perf_counter()
                net(x)
                _sync(x.device)
                if i >= warmup:
                    times.append(time.perf_counter() - t)
        rows.append((k, sum(p.numel() for p in model.params(depth=k)), 1000 * statistics.median(times)))
    model.train(was_training)
    return rows


class VisionTask(OneRunTask):
    """One run of an image classifier: what a paradigm sees (batches, loss, loss_at, step) and what the loop
    needs (lpa_core.train). Per-run tensors have shape [1]."""

    def __init__(self, cfg):
        self.init_run(cfg)
        torch.backends.cudnn.benchmark |= self.device.type == "cuda"  # allow_tf32 is cuDNN's default
        key = (self.dataset, cfg.data_dir, cfg.imagenet_dir, cfg.device, cfg.train_subset, cfg.test_subset, cfg.val_frac)
        if key not in _DATA:
            _DATA.clear()
            _DATA[key] = load_images(self.dataset, cfg)
        self.data = _DATA[key]
        if self.data.n_train < cfg.batch_size:
            raise ValueError(f"batch_size: {cfg.batch_size} is more than the {self.data.n_train} training images")
        spec = self.data.spec
        model = create_model(cfg.arch, seeds=[self.seed], d_in=(spec.channels, spec.size, spec.size), d_out=spec.classes,
                             head=cfg.head, topology=cfg.topology, tau=cfg.tau, normalisation=cfg.normalisation, wiring=cfg.wiring)
        self.channels_last = family(cfg.arch) == "resnet" and (cfg.memory_format == "channels_last" or (
            cfg.memory_format == "auto" and self.amp and self.device.type == "cuda"))
        self.model = model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        self.model.amp = self.amp
        self.opt = make_optimizer(self.model, cfg.arch, cfg.lr, cfg.weight_decay, cfg.shortcut_decay == "same")
        self.lr = cfg.lr
        self.gen = torch.Generator().manual_seed(2_000_003 + self.seed)  # batch order and augmentation
        self.model.layer_flops = vision_layer_flops(cfg.arch, spec.classes, spec.channels, spec.size)  # per image
        self.counters()
        self.n_params = sum(p.numel() for p in self.model.parameters())
        from lpa_core._torchvision import import_timm, import_torchvision

        self.versions = {"torchvision": import_torchvision().__version__, "timm": import_timm().__version__}
        self.eval_batch = max(cfg.batch_size, 256)

    def autocast(self):
        return self.model.autocast()

    def _input(self, x):
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # --- what a paradigm uses -----------------------------------------------------------------------------------

    @property
    def n_batches(self):
        """Batches per epoch (the last partial one is dropped)."""
        return self.data.n_train // self.cfg.batch_size

    def batches(self):
        """One pass over the (augmented) training set in this run's shuffled order; the model in train mode."""
        self.model.train()
        for x, y in self.data.train_batches(self.cfg.batch_size, self.gen):
            yield self._input(x), y

    def loss_at(self, h, y):
        """Loss [1] of the shared head on representation h."""
        self.model.count(self.model.depth + 1, h)
        with self.autocast():
            logits = self.model.head(h)
        return F.cross_entropy(logits.float(), y).reshape(1)

    def loss(self, x, y, depth=None, metric=False):
        """Cross-entropy [1] at `depth` (None = full); with metric=True also the batch accuracy [1] (higher is better)."""
        with self.autocast():
            logits = self.model(x, depth)
        ce = F.cross_entropy(logits.float(), y).reshape(1)
        if not metric:
            return ce
        return ce, (logits.detach().argmax(1) == y).float().mean().reshape(1)

    # --- what the loop uses -------------------------------------------------------------------------------------

    def describe(self):
        c, s = self.data.spec.channels, self.data.spec.size
        r = RECIPES[family(self.cfg.arch)]
        return (f"1 run: {self.cfg.arch} ({self.n_params / 1e6:.2f}M params, {self.model.depth} blocks) on {self.dataset} "
                f"({self.data.n_train} train / {self.data.n_val} validation / {self.data.n_test} test images, {c}x{s}x{s}); {r['optimizer']} lr "
                f"{self.cfg.lr} wd {self.cfg.weight_decay}, {self.cfg.epochs} epochs of {self.data.n_train // self.cfg.batch_size} "
                f"batches of {self.cfg.batch_size}; {self.device} {self.precision}{' channels_last' if self.channels_last else ''}")

    @torch.no_grad()
    def evaluate(self, split="test", every_depth=True, subset=0):
        """{depth: (accuracy %, mean loss)} on split 'test', 'val' or 'train' (not augmented), at every depth through the
        shared head (one forward: the head reads each block's output) or at full depth only."""
        L, dev = self.model.depth, self.device
        loss, correct, n = torch.zeros(L + 1, device=dev), torch.zeros(L + 1, device=dev), 0
        self.model.eval()
        with self.autocast():
            for x, y in self.data.eval_batches(split, self.eval_batch, subset):
                x = self._input(x)
                outs = enumerate(self.model.walk(x), 1) if every_depth else [(L, None)]
                for d, h in outs:
                    logits = (self.model(x) if h is None else self.model.head(h)).float()
                    loss[d] += F.cross_entropy(logits, y, reduction="sum")
                    correct[d] += (logits.argmax(1) == y).sum()
                n += len(y)
        self.model.train()
        depths = range(1, L + 1) if every_depth else [L]
        return {d: (float(100 * correct[d] / n), float(loss[d] / n)) for d in depths}

    def history(self, epoch, wall):
        L, rows = self.model.depth, []
        splits = [("train", TRAIN_EVAL)] + [("val", 0)] * bool(self.data.n_val) + [("test", 0)]
        for split, subset in splits:
            acc, loss = self.evaluate(split, every_depth=False, subset=subset)[L]
            self.bad |= not np.isfinite(loss)
            rows += [(f"{split}_loss", loss), (f"{split}_acc_pct", acc)]
        pre = [self.cfg.exp, self.dataset, self.cfg.arch, self.cfg.paradigm, self.seed, epoch, *self.counts(0),
               round(wall, 3), self.lr]
        test_loss, test_acc = rows[-2][1], rows[-1][1]
        rows = [pre + [m, float("nan") if bool(self.bad[0]) else v] for m, v in rows]
        return rows, f"test acc {test_acc:.2f}% loss {test_loss:.4g}"

    @torch.no_grad()
    def embeddings(self, n):
        """(emb float16 [L, n, D], labels [n], test indices [n]): head.pre_logits at every depth."""
        x, y, idx = self.data.sample(n)
        self.model.eval()
        chunks = []
        with self.autocast():
            for k in range(0, len(y), self.eval_batch):
                xb = self._input(x[k:k + self.eval_batch])
                chunks.append(torch.stack([self.model.head.pre_logits(h).float() for h in self.model.walk(xb)]).cpu())
        self.model.train()
        return torch.cat(chunks, dim=1).half().numpy(), y.cpu().numpy(), idx.numpy()

    def write_outputs(self, out, history, status, diverged_at, wall):
        cfg, L, bad = self.cfg, self.model.depth, bool(self.bad[0])
        keys = [cfg.exp, self.dataset, cfg.arch, cfg.paradigm, self.seed]
        test = self.evaluate("test")
        layerwise = [keys + [d, m, float("nan") if bad else test[d][k], status[0]]
                     for d in range(1, L + 1) for k, m in enumerate(("test_acc_pct", "test_loss"))]
        eff = int(self.state.get("depth", torch.tensor([L]))[0])
        summary = [keys + [status[0], diverged_at[0] or "", *self.counts(0), round(wall, 3), L, eff,
                           round(100 * (1 - eff / L), 2), self.n_params, cfg.lr, sum(p.numel() for p in self.model.params(depth=eff))]]
        if cfg.n_embed:
            emb, labels, index = self.embeddings(cfg.n_embed)
            io.write_npz(out / "embeddings.npz", emb=emb, labels=labels, index=index, depth=np.arange(1, L + 1),
                         dataset=self.dataset, arch=cfg.arch, paradigm=cfg.paradigm, seed=self.seed, status=status[0])
        x, _, _ = self.data.sample(min(cfg.batch_size, self.data.n_test))
        costs = depth_costs(self.model, self._input(x))
        device = f"{io.hardware(cfg.device)} {self.precision}"
        inference = [keys + [k, p, len(x), round(ms, 4), round(1000 * len(x) / ms, 1), device] for k, p, ms in costs]
        io.write_csv(out / "layerwise.csv", LAYERWISE, layerwise)
        io.write_csv(out / "history.csv", HISTORY, history)
        io.write_csv(out / "summary.csv", VSUMMARY, summary)
        if cfg.paradigm == "layerdrop":
            self.write_pruned(out, keys, status[0], lambda: dict(zip(("test_acc_pct", "test_loss"),
                                                                     self.evaluate("test", every_depth=False)[L])))
        io.write_csv(out / "inference.csv", INFERENCE, inference)
