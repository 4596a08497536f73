"""The GPU code paths, exercised on a CPU (issue 14): `precision: bf16` runs the same autocast code as CUDA
(torch's CPU bf16 autocast) for the vision and LM tasks, `memory_format: channels_last` the same ResNet layout, and
the LM learning rate moves every step as GaLore's scheduler does. Tiny models and data; the CUDA-only checks are
the `gpu` tests (here, in test_vision.py and test_core.py), which benchmarks/gpu_acceptance.sh runs.

Tolerances (stated): bf16 keeps 8 mantissa bits (relative rounding 2^-9 = 0.2% per operation), so a bf16 forward
of a tiny freshly initialised model is within BF16_RTOL = 5% (relative, max over logits / mean loss) of the fp32
one, and the per-depth test loss after two epochs of Simultaneous on the same batches within BF16_RUN_ATOL = 0.05
nats (random-label tiny data: losses near ln 3 = 1.10; measured 0.014 for ResNet at lr 0.01, 0.001 for ViT; at
the ResNet recipe's lr 0.05 on this noise the two trajectories part chaotically, so the check uses 0.01).
channels_last is a layout, not a precision: a ResNet SGD step in it equals the contiguous step to fp32 tolerance
(rtol 1e-4, atol 1e-5). The `gpu` test at the end compares CUDA bf16 with CPU fp32 on one batch (BF16_RTOL)."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from test_vision import FAMILIES, QUIET, tiny, vcfg  # noqa: F401  (tiny: the fixture)
from lpa_core.train import train
from lpa_core.vision import VisionTask

BF16_RTOL, BF16_RUN_ATOL = 0.05, 0.05


def final_loss(out, metric):
    lw = pd.read_csv(out / "layerwise.csv")
    return lw[lw.metric == metric].set_index("depth").value


@pytest.mark.parametrize("family", list(FAMILIES))
def test_vision_bf16_on_cpu_runs_the_autocast_path(tiny, tmp_path, family):  # noqa: F811
    runs = {}
    for prec in ("fp32", "bf16"):
        cfg = vcfg(FAMILIES[family], precision=prec, **({"lr": 0.01} if family == "resnet" else {}))
        status = train(cfg, tmp_path / prec, tmp_path / f"ck{prec}", log=QUIET)
        assert status == ["ok"]
        runs[prec] = final_loss(tmp_path / prec, "test_loss")
        assert np.isfinite(runs[prec]).all()
        assert json.loads((tmp_path / prec / "run.json").read_text())["precision"] == prec
        assert (pd.read_csv(tmp_path / prec / "inference.csv").device.str.endswith(f" {prec}")).all()
    assert (runs["bf16"] - runs["fp32"]).abs().max() < BF16_RUN_ATOL
    task = VisionTask(vcfg(FAMILIES[family], precision="bf16"))
    assert task.amp and task.precision == "bf16"
    x, y = next(task.batches())
    with torch.no_grad():
        task.model.amp = False
        ref = task.model(x).float()
        task.model.amp = True
        low = task.model(x)
    assert low.dtype == torch.bfloat16  # the autocast really ran (CPU)
    assert (low.float() - ref).abs().max() <= BF16_RTOL * ref.abs().max()


def test_channels_last_resnet_step_equals_contiguous(tiny):  # noqa: F811
    tasks = {fmt: VisionTask(vcfg(FAMILIES["resnet"], memory_format=fmt)) for fmt in ("contiguous", "channels_last")}
    assert not tasks["contiguous"].channels_last and tasks["channels_last"].channels_last
    conv = next(m for m in tasks["channels_last"].model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    losses = {}
    for fmt, t in tasks.items():
        x, y = next(t.batches())
        assert x.is_contiguous(memory_format=torch.channels_last) == (fmt == "channels_last")
        losses[fmt] = t.loss(x, y)
        t.step(losses[fmt], t.model.params())
    torch.testing.assert_close(losses["channels_last"], losses["contiguous"], rtol=1e-4, atol=1e-5)
    for a, b in zip(tasks["contiguous"].model.parameters(), tasks["channels_last"].model.parameters()):
        torch.testing.assert_close(b.contiguous(), a, rtol=1e-4, atol=1e-5)
    assert VisionTask(vcfg(FAMILIES["vit"], memory_format="channels_last")).channels_last is False  # ResNets only


def test_auto_precision_is_fp32_on_cpu_and_bad_values_are_one_line(tiny):  # noqa: F811
    t = VisionTask(vcfg(FAMILIES["resnet"]))
    assert not t.amp and t.precision == "fp32" and not t.channels_last
    for key, val in (("precision", "fp16"), ("memory_format", "nhwc")):
        with pytest.raises(ValueError, match=rf"^{key}: unknown '{val}'"):
            vcfg(**{key: val})


# --- language model -------------------------------------------------------------------------------------------------

lm_tests = pytest.importorskip("test_lm")


def test_lm_bf16_on_cpu_runs_the_autocast_path(tmp_path, tmp_path_factory):
    from lpa_core.lm import LMTask

    data_dir = str(tmp_path_factory.mktemp("lmdata"))
    losses = {}
    for prec in ("fp32", "bf16"):
        cfg = lm_tests.tiny_cfg(data_dir, paradigm="lpa", precision=prec)
        assert train(cfg, tmp_path / prec, tmp_path / f"ck{prec}", log=QUIET) == ["ok"]
        losses[prec] = final_loss(tmp_path / prec, "val_loss")
        assert np.isfinite(losses[prec]).all()
        assert json.loads((tmp_path / prec / "run.json").read_text())["precision"] == prec
    assert (losses["bf16"] - losses["fp32"]).abs().max() < BF16_RUN_ATOL
    task = LMTask(lm_tests.tiny_cfg(data_dir, precision="bf16"))
    x, y = next(task.batches())
    with torch.no_grad():
        task.model.amp = False
        ref = task.loss(x, y)
        task.model.amp = True
        low = task.loss(x, y)
        assert task.model(x).dtype == torch.bfloat16
    assert abs(float(low - ref)) <= BF16_RTOL * float(ref)


def galore_lambda(step, warmup, total, min_ratio):
    """GaLore's training_utils._get_cyclical_cosine_schedule_with_min_lr_lambda, one cycle (cycle_length = total),
    written out independently of lpa_core.lm."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@pytest.mark.parametrize("paradigm", ["simultaneous", "lpa"])
def test_lm_learning_rate_moves_every_step_as_galore(paradigm, tmp_path_factory, monkeypatch):
    """4 epochs of 5 batches, 1 warm-up epoch, cosine to 10%: the rate of each batch is GaLore's lambda at that
    step (0 at the first step, rising within the first epoch); LPA's L+1 steps of a batch share it, and its
    full-depth pass keeps the epoch's last rate."""
    from lpa_core import lm
    from lpa_core.lm import galore_lr

    data_dir = str(tmp_path_factory.mktemp("lmdata"))
    cfg = lm_tests.tiny_cfg(data_dir, paradigm=paradigm, epochs=4, epoch_batches=5, warmup_epochs=1, final_lr_frac=0.1,
                            eval_every=4)
    seen = []
    real = lm.LMTask.step
    monkeypatch.setattr(lm.LMTask, "step", lambda self, *a, **k: (seen.append(self.opt.param_groups[0]["lr"]), real(self, *a, **k))[1])
    train(cfg, tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("ck"), log=QUIET)
    per_batch = 1 if paradigm == "simultaneous" else lm.LM_ARCHS["lm_tiny"][1]["num_hidden_layers"] + 1
    want = [cfg.lr * galore_lambda(s, 5, 20, 0.1) for s in range(20)]
    if paradigm == "simultaneous":
        assert seen == pytest.approx(want)
    else:  # per epoch: 5 batches x L progressive steps at that batch's rate, then 5 full-depth steps at the last one
        L = per_batch - 1
        expect = []
        for e in range(4):
            expect += [r for r in want[5 * e:5 * e + 5] for _ in range(L)] + [want[5 * e + 4]] * 5
        assert seen == pytest.approx(expect)
    assert seen[0] == 0 and len(set(seen[:5 * per_batch])) > 1  # the warm-up moves within the first epoch
    assert galore_lr(2.0, 20, 20, 5, 0.1) == pytest.approx(0.2) and galore_lr(2.0, 5, 20, 5, 0.1) == pytest.approx(2.0)


# --- on a GPU (pytest -m gpu; benchmarks/gpu_acceptance.sh runs these) --------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_first_step_close_to_cpu_fp32(tiny, tmp_path_factory):  # noqa: F811
    """The same init and batch: the CUDA bf16 loss of each task is within BF16_RTOL of the CPU fp32 one."""
    from lpa_core.lm import LMTask

    data_dir = str(tmp_path_factory.mktemp("lmdata"))
    makers = {"resnet": lambda **kw: VisionTask(vcfg(FAMILIES["resnet"], **kw)),
              "vit": lambda **kw: VisionTask(vcfg(FAMILIES["vit"], **kw)),
              "lm": lambda **kw: LMTask(lm_tests.tiny_cfg(data_dir, **kw))}
    for name, make in makers.items():
        losses = {}
        for dev in ("cpu", "cuda"):
            t = make(device=dev)
            assert t.amp == (dev == "cuda")
            x, y = next(t.batches())
            t.model.eval()
            with torch.no_grad():
                losses[dev] = float(t.loss(x, y))
        assert abs(losses["cuda"] - losses["cpu"]) <= BF16_RTOL * abs(losses["cpu"]), (name, losses)
