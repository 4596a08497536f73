"""python -m lpa_core cost: the workflow's train commands read back into TrainConfigs, FLOPs per depth that agree
with torch's own counter, paradigm costs in the ratios Algorithm 1 implies, measured MFU preferred to the
assumption, and a dry run of the real workflow costed job by job."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lpa_core import cost
from lpa_core.cli import main

ROOT = Path(__file__).resolve().parent.parent
VISION_CMD = ("(test -f x || python -m lpa_core fetch-data) && python -m lpa_core train --exp table2 --arch resnet10_w16 "
              "--paradigm {p} --datasets fashion_mnist --seeds {s} --data_dir data --lr 0.05 --batch_size 50 --epochs 2 "
              "--eval_every 1 --n_embed 150 --train_subset 500 --test_subset 250 --threads 1 --out results/runs/x/{p}{s} "
              "--ckpt-dir checkpoints/x) > logs/x.log 2>&1")
LM_CMD = ("python -m lpa_core train --exp lm --arch lm_tiny --paradigm lpa --datasets pydoc --seeds 0 --topology ancre "
          "--seq_len 64 --vocab_size 1024 --batch_size 8 --epochs 3 --epoch_batches 20 --eval_tokens 4096 --out o > l 2>&1")


def test_train_commands_are_read_back_into_configs():
    text = "\n".join([VISION_CMD.format(p="lpa", s=0), "rule table2:", VISION_CMD.format(p="simultaneous", s=1), LM_CMD])
    jobs = cost.parse_commands(text)
    assert [(c.arch, c.paradigm, c.seeds, o) for c, o in jobs] == [
        ("resnet10_w16", "lpa", (0,), "results/runs/x/lpa0"), ("resnet10_w16", "simultaneous", (1,), "results/runs/x/simultaneous1"),
        ("lm_tiny", "lpa", (0,), "o")]
    assert jobs[0][0].train_subset == 500 and jobs[0][0].lr == 0.05 and jobs[2][0].topology == "ancre"


def test_vision_flops_per_depth_match_torchs_counter_on_a_real_forward():
    from lpa_core.registry import create_model
    from lpa_core.vision_models import truncate

    F = cost.vision_depth_flops("resnet10_w16", 10, 1, 32)
    model = create_model("resnet10_w16", d_in=(1, 32, 32), d_out=10).eval()
    for k in (1, model.depth):
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            truncate(model, k)(torch.zeros(1, 1, 32, 32))
        assert F[k - 1] == fc.get_total_flops()
    assert F == sorted(F) and len(F) == model.depth


def test_lm_flops_per_depth_match_torchs_counter_plus_attention():
    """torch's counter sees the matmuls (it does not count the CPU SDPA kernel): PaLM's count is those plus the
    attention term 4 k d T per token, within 1% (norm weights are the difference)."""
    pytest.importorskip("transformers")
    from lpa_core.registry import create_model

    T = 32
    F = cost.lm_depth_flops("lm_tiny", 300, T)
    model = create_model("lm_tiny", d_in=300, d_out=300).eval()
    d = model.config.hidden_size
    for k in (1, model.depth):
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(torch.zeros(1, T, dtype=torch.long), k)
        assert F[k - 1] == pytest.approx(fc.get_total_flops() + 4 * k * d * T * T, rel=0.01)


def test_paradigm_costs_follow_the_steps_they_take():
    jobs = dict((c.paradigm, c) for c, _ in cost.parse_commands("\n".join(VISION_CMD.format(p=p, s=0) for p in
                                                                            ("simultaneous", "lpa", "sequential"))))
    F = cost.vision_depth_flops("resnet10_w16", 10, 1, 32)
    train = {p: 3 * 50 * (500 // 50) * 2 for p in jobs}  # examples x batches x epochs x (fwd + bwd)
    evals = F[-1] * ((250 + 500) * 3 + 250)  # 2 evaluated epochs + the end, then the every-depth pass
    assert cost.job_flops(jobs["simultaneous"])[0] == pytest.approx(train["simultaneous"] * F[-1] + evals)
    assert cost.job_flops(jobs["lpa"])[0] == pytest.approx(train["lpa"] * (sum(F) + F[-1]) + evals)
    assert cost.job_flops(jobs["sequential"])[0] == pytest.approx(train["sequential"] * sum(F) / len(F) + evals)


def test_measured_mfu_replaces_the_assumption(tmp_path):
    jobs = cost.parse_commands(VISION_CMD.format(p="simultaneous", s=0))
    flops = cost.job_flops(jobs[0][0])[0]
    (row,) = cost.estimate(jobs, "h200", tmp_path / "none.csv")
    assert row[7] == pytest.approx(flops / (790e12 * cost.ASSUMED_MFU["resnet"]) / 3600) and "assumed" in row[9]
    (tmp_path / "mfu.csv").write_text("arch,paradigm,precision,mfu\nresnet10_w16,simultaneous,bf16,0.05\nresnet10_w16,lpa,bf16,0.5\n")
    (row,) = cost.estimate(jobs, "h200", tmp_path / "mfu.csv")
    assert row[7] == pytest.approx(flops / (790e12 * 0.05) / 3600) and "measured" in row[9]
    with pytest.raises(ValueError, match="^gpu: unknown 'tpu'"):
        cost.estimate(jobs, "tpu")


def test_cost_command_from_saved_commands(tmp_path, capsys):
    (tmp_path / "dry.txt").write_text("\n".join([VISION_CMD.format(p="lpa", s=0), VISION_CMD.format(p="lpa", s=1), LM_CMD]))
    assert main(["cost", "--commands", str(tmp_path / "dry.txt")]) == 0
    out = capsys.readouterr().out
    assert "total vision: 2 jobs" in out and "total lm: 1 jobs" in out and "GPU-hours" in out


@pytest.mark.slow
def test_cost_of_the_real_quick_dag():
    """Every train job of the quick DAG is costed: as many as the dry run lists."""
    text = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-n", "-p", "--forceall", "--nolock",
                           "--config", "scale=quick"], cwd=ROOT, capture_output=True, text=True, timeout=600).stdout
    n = text.count("python -m lpa_core train")
    rows = cost.estimate(cost.parse_commands(text))
    assert n > 30 and sum(r[4] for r in rows) == n
    assert {r[0] for r in rows} == {"surfaces", "vision", "lm"}
