"""benchmarks/gpu_acceptance.sh and its Python pieces: the travelling Fashion-MNIST subset reads back as the
dataset, the epoch budget follows the measured speed, the summary finds the goals in the benchmark CSVs, and
(slow) the whole script dry-runs on a CPU with --tiny, writing everything under one folder."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_data  # noqa: E402
import gpu_report  # noqa: E402

from lpa_core.images import IDX, load_fashion_mnist  # noqa: E402


def fake_subset(folder, n=(64, 32)):
    g = np.random.default_rng(0)
    for split, k in zip(("train", "test"), n):
        images, labels = IDX[split]
        gpu_data.write_idx(folder / "FashionMNIST/raw" / f"{images}.gz", g.integers(0, 256, (k, 28, 28)))
        gpu_data.write_idx(folder / "FashionMNIST/raw" / f"{labels}.gz", g.integers(0, 10, k))
    return folder


def test_subset_files_read_back_as_fashion_mnist(tmp_path):
    fake_subset(tmp_path / "sub")
    first = (tmp_path / "sub/FashionMNIST/raw/train-images-idx3-ubyte.gz").read_bytes()
    d = load_fashion_mnist(tmp_path / "sub", search=())
    assert d["train"][0].shape == (64, 28, 28) and d["test"][1].shape == (32,) and d["train"][0].dtype == torch.uint8
    fake_subset(tmp_path / "again")
    assert (tmp_path / "again/FashionMNIST/raw/train-images-idx3-ubyte.gz").read_bytes() == first  # no timestamp


def test_epochs_fit_the_budget_at_the_measured_speed(tmp_path):
    pd.DataFrame({"arch": ["r", "r"], "paradigm": ["simultaneous", "lpa"], "images_per_s": [13000.0, 2000.0]}).to_csv(
        tmp_path / "s.csv", index=False)
    assert gpu_report.epochs_for(tmp_path / "s.csv", "r", "simultaneous", 20000, 30) == 15  # 30 x 13000 / 20000 / 1.3
    assert gpu_report.epochs_for(tmp_path / "s.csv", "r", "lpa", 20000, 30) == 2
    assert gpu_report.epochs_for(tmp_path / "s.csv", "r", "lpa", 20000, 1) == 1 and gpu_report.epochs_for(
        tmp_path / "s.csv", "r", "simultaneous", 20000, 1000, most=30) == 30
    with pytest.raises(ValueError, match="no row for x / lpa"):
        gpu_report.epochs_for(tmp_path / "s.csv", "x", "lpa", 1, 1)


def test_summary_checks_the_goals(tmp_path):
    b = tmp_path / "benchmarks/gpu"
    b.mkdir(parents=True)
    pd.DataFrame({"arch": ["vit12", "vit12"], "paradigm": ["simultaneous", "lpa"], "precision": ["bf16"] * 2,
                  "model_tflops_per_s": [150.0, 140.0], "mfu": [0.19, 0.177], "cost_vs_simultaneous": [1.0, 8.0],
                  "theory_flops_vs_simultaneous": [1.0, 7.5]}).to_csv(b / "vision_speed.csv", index=False)
    pd.DataFrame({"arch": ["llama_60m"], "paradigm": ["simultaneous"], "precision": ["bf16"], "model_tflops_per_s": [150.0],
                  "mfu": [0.19]}).to_csv(b / "lm_speed.csv", index=False)
    pd.DataFrame({"arch": ["vit12", "vit12"], "topology": ["cascade", "ancre"], "batch": [128, 128],
                  "time_vs_cascade": [1.0, 1.02]}).to_csv(b / "topology_overhead.csv", index=False)
    (b / "vision_speed.json").write_text(json.dumps({"peak_flops": 790e12}))
    gpu_report.summary(tmp_path)
    goals = pd.read_csv(b / "goals.csv").set_index("goal")
    assert goals.loc["LPA per batch / FLOP ratio, vit12", "measured"] == pytest.approx(8 / 7.5, abs=1e-3)
    assert bool(goals.loc["LPA per batch / FLOP ratio, vit12", "met"])
    assert bool(goals.loc["ANCRe step time / cascade, vit12 batch 128", "met"])
    assert not goals.loc["MFU llama_60m bf16 (Simultaneous)", "met"] and goals.loc["MFU vit12 bf16 (Simultaneous)", "met"]
    assert set(pd.read_csv(b / "mfu.csv").peak_tflops) == {790.0} and (b / "summary.md").is_file()


@pytest.mark.slow
def test_tiny_dry_run_on_the_cpu(tmp_path):
    data = fake_subset(tmp_path / "data", n=(300, 150))
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_acceptance.sh"), "--device", "cpu", "--tiny", "--out",
                        str(tmp_path / "out"), "--data", str(data)], env=env, capture_output=True, text=True, timeout=1000)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "out"
    steps = pd.read_csv(out / "steps.csv").set_index("step")
    ran = steps.drop(index=[s for s in ("pytest_gpu",) if str(steps.rc.get(s)) == "not installed"])
    failed = ran.index[ran.rc.astype(str) != "0"]
    assert failed.empty, steps.to_string() + "".join(f"\n--- {s}.log\n" + (out / "logs" / f"{s}.log").read_text()[-1500:]
                                                     for s in failed if (out / "logs" / f"{s}.log").is_file())
    assert {"vision_speed", "topology_overhead", "lm_speed", "summary"} <= set(steps.index)
    train = pd.read_csv(out / "benchmarks/gpu/training.csv")
    assert len(train) == 4 and set(train.paradigm) == {"simultaneous", "lpa"} and (train.precision == "bf16").all()
    mfu = pd.read_csv(out / "benchmarks/gpu/mfu.csv")
    assert {"resnet10_w16", "vit6_d64", "lm_tiny"} == set(mfu.arch) and (mfu.model_tflops_per_s > 0).all()
    assert json.loads((out / "acceptance.json").read_text())["tiny"] is True
    assert not list(data.rglob("*-ubyte"))  # the subset folder stays as it travels (gz only)
