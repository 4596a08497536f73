"""Issue 12 on the vision and LM tracks: the validation hold-out (images: out of the training set, after
train_subset; LMs: the tail of the training tokens) is disjoint from training and test and the same for every seed
and paradigm, history records it, and the FLOPs counter follows the step rule of lpa_core.task on the per-layer forward costs
of lpa_core.cost (Simultaneous: 3 F_L - stem per example; Sequential: less). Tiny models and data; CPU."""
import pandas as pd
import pytest
import torch

from lpa_core import cost, images, lm, text, vision
from lpa_core._torchvision import import_timm
from lpa_core.config import TrainConfig
from lpa_core.images import Spec, TensorImages
from lpa_core.paradigms.sequential import stage
from lpa_core.registry import create_model
from lpa_core.train import train

import_timm()  # (timm through the project's import: a torchvision without its ops still loads)
torch.set_num_threads(1)
QUIET = lambda msg: None  # noqa: E731
SPEC = Spec(3, 3, 8, (0.5,) * 3, (0.25,) * 3)


def numbered(n_train=60, n_test=20):
    """Images whose first pixel is their id (train 0.., test 100..), so splits can be told apart."""
    g = torch.Generator().manual_seed(0)
    split = {}
    for k, n, first in (("train", n_train, 0), ("test", n_test, 100)):
        x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
        x[:, 0, 0, 0] = torch.arange(first, first + n, dtype=torch.uint8)
        split[k] = (x, torch.randint(0, 3, (n,), generator=g))
    return split


@pytest.fixture
def tiny(monkeypatch):
    vision._DATA.clear()
    monkeypatch.setattr(vision, "load_images", lambda name, cfg: TensorImages(
        "tiny", SPEC, numbered(), cfg.device, cfg.train_subset, cfg.test_subset, cfg.val_frac))
    yield
    vision._DATA.clear()


def vcfg(**kw):
    return TrainConfig(**{**dict(arch="resnet10_w16", datasets=("cifar10",), epochs=1, batch_size=8, lr=0.05,
                                 eval_every=1, n_embed=0, ckpt_every_s=1e9, val_frac=0.25, train_subset=48), **kw})


def ids(x):
    return set(x[:, 0, 0, 0].tolist())


def test_image_validation_split_is_disjoint_fixed_and_carved_after_the_subset(tiny):
    a = vision.VisionTask(vcfg(seeds=(0,), paradigm="simultaneous")).data
    vision._DATA.clear()
    b = vision.VisionTask(vcfg(seeds=(1,), paradigm="lpa")).data
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.x_train, b.x_train)
    assert (a.n_train, a.n_val) == (36, 12)
    assert not ids(a.x_val) & ids(a.x_train) and not ids(a.x_val) & ids(a.x_test)
    assert ids(a.x_val) | ids(a.x_train) == set(images.fixed_subset(60, 48).tolist())  # the subset, then the hold-out
    assert vision.VisionTask(vcfg(val_frac=0.0)).data.n_val == 0
    with pytest.raises(ValueError, match=r"^val_frac: a probability in \[0, 1\)"):
        vcfg(val_frac=1.0)
    with pytest.raises(ValueError, match="^val_frac: applies to"):
        TrainConfig(val_frac=0.1)


def test_imagenet_folder_holds_out_un_augmented_training_images(tmp_path):
    import numpy as np
    from PIL import Image

    for part, n in (("train", 5), ("val", 1)):
        for c in ("n01", "n02"):
            (tmp_path / part / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((40, 48, 3), i, dtype=np.uint8)).save(tmp_path / part / c / f"{i}.png")
    d = images.FolderImages(tmp_path, images.DATASETS["imagenet"], "cpu", workers=0, val_frac=0.2)
    assert (d.n_train, d.n_val) == (8, 2) and sorted(d.train_idx.tolist() + d.val_idx.tolist()) == list(range(10))
    (x, y), = d.eval_batches("val", 4)
    assert x.shape == (2, 3, 224, 224) and len(y) == 2


def test_lm_development_split_is_the_tail_of_the_training_tokens(tmp_path):
    full = text.load_text("pydoc", "bpe", 300, 16, str(tmp_path))
    d = text.load_text("pydoc", "bpe", 300, 16, str(tmp_path), val_frac=0.1)
    assert torch.equal(torch.cat([d.train, d.dev]), full.train) and torch.equal(d.val, full.val)
    assert len(d.dev) == round(0.1 * len(full.train)) and full.dev is None
    with pytest.raises(ValueError, match="^val_frac:"):
        text.load_text("pydoc", "bpe", 300, 16, str(tmp_path), val_frac=1e-6)


def flops_per_epoch(out):
    h = pd.read_csv(out / "history.csv")
    return h[h.epoch == 1].iloc[0]


@pytest.mark.parametrize("arch", ["resnet10_w16", "vit6_d64"])
def test_vision_history_has_val_metrics_and_the_step_rule_flops(tiny, tmp_path, monkeypatch, arch):
    F = cost.vision_layer_flops(arch, SPEC.classes, SPEC.channels, SPEC.size)
    depth = cost.depth_flops(F)
    got = {}
    for paradigm in ("simultaneous", "sequential", "lpa"):
        out = tmp_path / paradigm
        assert train(vcfg(arch=arch, paradigm=paradigm, lr=0.05 if "resnet" in arch else 1e-3), out, tmp_path / "ck",
                     log=QUIET) == ["ok"]
        got[paradigm] = flops_per_epoch(out)
    h = pd.read_csv(tmp_path / "simultaneous" / "history.csv")
    assert {"val_loss", "val_acc_pct", "train_loss", "test_loss"} <= set(h.metric)
    sim, seq = got["simultaneous"], got["sequential"]
    # Simultaneous: forward F_L, input gradients above the stem, weight gradients everywhere: 3 F_L - stem per image
    assert sim.samples == 32 and sim.flops == pytest.approx((3 * depth[-1] - F[0]) * sim.samples, rel=1e-9)
    # Sequential stage i: forward F_i, input gradients through blocks 1..i and the head (to reach the trained stem),
    # weight gradients of stem, block i and head only
    nb, L = 36 // 8, len(depth)
    per = lambda i: 2 * depth[i - 1] + F[i] + F[-1]  # noqa: E731
    assert seq.flops == pytest.approx(sum(per(stage(b, nb, L)) * 8 for b in range(nb)), rel=1e-9)
    assert seq.flops < sim.flops
    # LPA (Algorithm 1): steps at depths 1..L, then L, each 3 F_d - stem; equal compute is Simultaneous at
    # equal_flops_epochs, within half an epoch of LPA's counted FLOPs
    lpa = got["lpa"]
    assert lpa.flops == pytest.approx(32 * sum(3 * depth[d - 1] - F[0] for d in [*range(1, L + 1), L]), rel=1e-9)
    monkeypatch.setitem(images.DATASETS, "cifar10", SPEC)
    E = cost.equal_flops_epochs(vcfg(arch=arch, epochs=1))
    assert E > 1 and abs(E * sim.flops - lpa.flops) <= sim.flops / 2
    s = pd.read_csv(tmp_path / "simultaneous" / "summary.csv").iloc[0]
    assert s.flops == pytest.approx(sim.flops)


def test_lm_history_has_dev_metrics_and_simultaneous_flops(tmp_path):
    cfg = TrainConfig(arch="lm_tiny", datasets=("pydoc",), seq_len=16, vocab_size=300, batch_size=4, epoch_batches=2,
                      epochs=1, eval_tokens=128, n_generate=1, lr=3e-3, eval_every=1, ckpt_every_s=1e9,
                      data_dir=str(tmp_path), val_frac=0.1)
    assert train(cfg, tmp_path / "run", tmp_path / "ck", log=QUIET) == ["ok"]
    h = pd.read_csv(tmp_path / "run" / "history.csv")
    assert {"val_loss", "val_ppl", "dev_loss", "dev_ppl", "dev_acc_pct"} <= set(h.metric)
    model = create_model("lm_tiny", d_in=300, d_out=300)
    F_L = cost.depth_flops(cost.lm_layer_flops(model, 16))[-1]  # per sequence of 16 tokens
    row = h.iloc[0]
    assert row.samples == 8 and row.flops == pytest.approx(3 * F_L * row.samples, rel=1e-9)  # the stem is free
