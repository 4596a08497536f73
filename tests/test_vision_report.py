"""Vision tables and figures (lpa_core/report/) on small synthetic run folders written here: no training. A damaged
run folder stops every command with one line naming the file."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lpa_core import io, runs as contract
from lpa_core.cli import main
from lpa_core.fetch import fetch
from lpa_core.report.figures import pick_depths
from lpa_core.report.load import load
from lpa_core.report.tables import TABLES
from test_faults import damage  # the fault matrix's file damage (truncated, deleted, garbage)


def vision_table(kind, dirs, paper, amap=None):
    return TABLES[kind](load(dirs), paper, amap or {})


def inference_table(dirs):
    tab, _ = TABLES["inference"](load(dirs))
    return tab, [c[len("test_acc_pct_"):] for c in tab.columns if c.startswith("test_acc_pct_")]

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "config/paper_results.csv"
KEYS = ["exp", "dataset", "arch", "paradigm", "seed"]
L = 4


def fake_run(root, exp, dataset, arch, paradigm, seed, group_size=2, lr=0.05, epochs=3, diverged=False, n_blocks=L):
    """A run folder as lpa_core.vision writes it, with made-up numbers: accuracy grows with depth, LPA best."""
    d = Path(root) / exp / dataset / arch / (paradigm if paradigm != "lpa_grouped" else f"lpa_grouped_k{group_size}") / f"seed{seed}"
    rng = np.random.default_rng(hash((paradigm, seed, lr)) % 2**32)
    bonus = {"lpa": 8, "adaptive_lpa": 6, "lpa_grouped": 5, "simultaneous": 3}.get(paradigm, 0) + 10 * (lr == 0.05)
    keys = [exp, dataset, arch, paradigm, seed]
    status = "diverged" if diverged else "ok"
    lw = []
    for k in range(1, n_blocks + 1):
        acc = float("nan") if diverged else 50 + bonus + 5 * k + rng.normal()
        lw += [keys + [k, "test_acc_pct", acc, status], keys + [k, "test_loss", 2.5 - acc / 50, status]]
    io.write_csv(d / "layerwise.csv", KEYS + ["depth", "metric", "value", "status"], lw)
    hist = []
    for e in range(1, epochs + 1):
        acc = 40 + bonus + 8 * e + rng.normal()
        pre = keys + [e, 20 * e * (n_blocks + 1 if "lpa" in paradigm else 1), 1000 * e, 3.0 * e, lr]
        hist += [pre + ["test_acc_pct", acc], pre + ["test_loss", 2 - acc / 60]]
    io.write_csv(d / "history.csv", KEYS + ["epoch", "steps", "samples", "wall_s", "lr", "metric", "value"], hist)
    eff = 2 if paradigm == "adaptive_lpa" else n_blocks
    io.write_csv(d / "summary.csv", KEYS + ["status", "diverged_epoch", "steps", "samples", "wall_s", "n_blocks",
                                            "effective_depth", "reduction_pct", "params_per_run", "params_effective"],
                 [keys + [status, 2 if diverged else "", 100, 3000, 10.0 * (2 if "lpa" in paradigm else 1), n_blocks, eff,
                          100 * (1 - eff / n_blocks), 1000 * n_blocks, 1000 * eff]])
    io.write_csv(d / "inference.csv", KEYS + ["depth", "params", "batch", "latency_ms", "images_per_s", "device"],
                 [keys + [k, 100 + 1000 * k, 50, 1.0 + 2.0 * k, 50 / (1 + 2 * k) * 1000, "cpu fp32"] for k in range(1, n_blocks + 1)])
    emb = rng.normal(size=(n_blocks, 40, 8)).astype(np.float16)
    labels = np.arange(40) % 10
    emb[:, :, 0] += labels  # separable classes
    io.write_npz(d / "embeddings.npz", emb=emb, labels=labels, index=np.arange(40), depth=np.arange(1, n_blocks + 1),
                 dataset=dataset, arch=arch, paradigm=paradigm, seed=seed, status=status)
    cfg = dict(exp=exp, datasets=[dataset], seeds=[seed], arch=arch, paradigm=paradigm, lr=lr, group_size=group_size,
               epochs=epochs, weight_decay=5e-4, batch_size=50, warmup_epochs=0, final_lr_frac=0.0, train_subset=1000,
               test_subset=500)
    contract.finish_run(d, {"config": cfg, "git_commit": "abc", "hardware": "test cpu", "host": "h", "start": "s", "end": "e",
                            "versions": {}, "runs": [{"dataset": dataset, "seed": seed, "status": status}]}, "vision", "quick", exp)
    return str(d)


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "results/runs/quick"
    t2 = [fake_run(root, "table2", "fashion_mnist", "resnet10_w16", p, s, diverged=(p == "sequential" and s == 1))
          for p in ["sequential", "simultaneous", "lpa", "adaptive_lpa", "lpa_grouped"] for s in (0, 1)]
    groups = [fake_run(root, "sec54", "fashion_mnist", "resnet10_w16", "lpa_grouped", s, group_size=3) for s in (0, 1)]
    lrs = [fake_run(root, "fig10", "fashion_mnist", "resnet10_w16", "lpa", s, lr=0.15) for s in (0, 1)]
    return dict(t2=t2, groups=groups, lrs=lrs, root=tmp_path)


def test_table2_tidy_with_paper_values_of_the_stood_in_model(runs):
    tab, _ = vision_table("table2", runs["t2"], PAPER, {"resnet10_w16": "resnet18"})
    assert list(tab.columns) == ["dataset", "arch", "paradigm", "metric", "mean", "std", "n_seeds", "n_diverged",
                                 "paper_value", "paper_arch"]
    acc = tab[tab.metric == "test_acc_pct"].set_index("paradigm")
    assert acc.at["lpa", "paper_value"] == "92.54" and acc.at["lpa", "paper_arch"] == "resnet18"
    assert acc.at["lpa_grouped", "paper_value"] == ""  # not in the paper's Table 2
    assert acc.at["sequential", "n_seeds"] == 1 and acc.at["sequential", "n_diverged"] == 1
    assert acc.at["lpa", "n_seeds"] == 2 and acc.at["lpa", "std"] > 0
    assert acc.at["lpa", "mean"] > acc.at["simultaneous", "mean"]
    assert set(tab.metric) == {"test_acc_pct", "test_loss"}


def test_table3_sec54_table4(runs):
    t3, _ = vision_table("table3", runs["t2"], PAPER, {"resnet10_w16": "vit24"})
    eff = t3[t3.metric == "effective_layers"].set_index("paradigm")
    assert eff.at["adaptive_lpa", "mean"] == 2 and eff.at["lpa", "mean"] == L
    assert eff.at["adaptive_lpa", "paper_value"] == "5"
    red = t3[t3.metric == "model_reduction_pct"].set_index("paradigm")
    assert red.at["adaptive_lpa", "mean"] == 50
    sec, _ = vision_table("sec54", [*runs["t2"], *runs["groups"]], PAPER)
    pars = list(dict.fromkeys(sec.paradigm))
    assert {"lpa_grouped_k2", "lpa_grouped_k3", "lpa", "simultaneous"} <= set(pars)
    rel = sec[sec.metric == "time_vs_simultaneous"].set_index("paradigm")["mean"]
    assert rel["simultaneous"] == pytest.approx(1.0) and rel["lpa"] == pytest.approx(2.0)
    root = runs["root"] / "results/runs/quick"
    t4dirs = [fake_run(root, "table4", "imagenet", "vit12", p, 0, n_blocks=12) for p in ("simultaneous", "lpa")]
    t4, _ = vision_table("table4", t4dirs, PAPER)
    row = t4[(t4.paradigm == "lpa") & (t4.dataset == "imagenet1k, depth 2")].iloc[0]
    assert row.paper_value == "33.19" and len(t4) == 24


def test_inference_table_reductions(runs):
    tab, pars = inference_table(runs["t2"])
    full = tab[tab.depth == L].iloc[0]
    assert full.size_reduction_x == pytest.approx(1.0) and full.speedup_x == pytest.approx(1.0)
    one = tab[tab.depth == 1].iloc[0]
    assert one.size_reduction_x == pytest.approx(4100 / 1100) and one.speedup_x == pytest.approx(9 / 3)
    assert "test_acc_pct_lpa" in tab.columns and not np.isnan(one.test_acc_pct_lpa)


def test_commands_write_tables_and_figures(runs, tmp_path):
    out = tmp_path / "out"
    amap = ["--arch-map", "resnet10_w16=resnet18"]
    assert main(["table", "table2", "--runs", *runs["t2"], "--paper", str(PAPER),
                 *amap, "--out-csv", str(out / "table2.csv"), "--out-md", str(out / "table2.md")]) == 0
    md = (out / "table2.md").read_text()
    assert "Scale `quick`" in md and "(92.54)" in md and "**" in md and "resnet10_w16 (for resnet18)" in md and "±" in md
    assert main(["table", "inference", "--runs", *runs["t2"], "--paper", str(PAPER), "--out-csv", str(out / "inf.csv"),
                 "--out-md", str(out / "inf.md")]) == 0
    assert "At a quarter of the blocks" in (out / "inf.md").read_text()
    assert main(["figures", "vision", "--runs", *runs["t2"], "--lr-runs", runs["t2"][4], *runs["lrs"], "--outdir", str(out)]) == 0
    assert main(["table", "fig6", "--runs", *runs["t2"], "--paper", str(PAPER), *amap, "--out-csv", str(out / "fig6.csv"),
                 "--out-md", str(out / "fig6.md")]) == 0
    for name in ("fig4_layerwise_fashion_mnist.png", "fig5_tsne_fashion_mnist_resnet10_w16.png",
                 "fig6_curves_fashion_mnist.png", "fig10_lr.png", "fig_inference.png"):
        assert (out / name).stat().st_size > 3_000, name
    beat = pd.read_csv(out / "fig6.csv")
    e = beat[(beat.paradigm == "lpa") & (beat.metric == "epoch_to_beat_sim")].iloc[0]
    assert 1 <= e["mean"] <= 3 and e.paper_value != e.paper_value  # no fig6 value for resnet18 in the paper


def test_report_shows_vision_tables(runs, tmp_path):
    out = tmp_path / "tables"
    for name in ("table2", "inference"):
        assert main(["table", name, "--runs", *runs["t2"], "--paper", str(PAPER), "--out-csv", str(out / f"{name}.csv"),
                     "--out-md", str(out / f"{name}.md")]) == 0
    assert main(["report", "--tables", str(out), "--runs", *runs["t2"], "--paper", str(PAPER), "--out",
                 str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "Table 2: ResNet-18/34" in page and "size and latency of the truncated models" in page


def test_pick_depths_and_fetch(tmp_path):
    assert pick_depths(4) == [1, 2, 3, 4] and pick_depths(24)[0] == 1 and pick_depths(24)[-1] == 24 and len(pick_depths(24)) == 8
    with pytest.raises(ValueError, match="unknown 'mnist'"):
        fetch("mnist", tmp_path)
    with pytest.raises(FileNotFoundError, match="imagenet_dir"):
        fetch("imagenet", tmp_path, str(tmp_path / "nope"))


@pytest.mark.parametrize("fault", ["truncated", "deleted", "garbage"])
def test_a_damaged_run_fails_the_table_naming_the_file(runs, tmp_path, capsys, fault):
    """Never exit 0 with a changed table: the command stops with one line naming the file and the fix."""
    path = Path(runs["t2"][3]) / "layerwise.csv"
    damage(path, fault)
    out = tmp_path / "t.csv"
    for cmd in (["table", "table2", "--paper", str(PAPER), "--out-csv", str(out)], ["figures", "vision", "--outdir", str(tmp_path)],
                ["report", "--tables", str(ROOT / "results/tables/quick"), "--paper", str(PAPER), "--out", str(tmp_path / "r.html")]):
        assert main([*cmd, "--runs", *runs["t2"]]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and "re-train that run or delete" in err[0], err
    assert not out.exists() and not (tmp_path / "r.html").exists()


def test_scale_and_identity_come_from_run_json(runs, tmp_path):
    moved = tmp_path / "elsewhere" / "x"
    import shutil

    shutil.copytree(runs["t2"][0], moved)
    (r,) = load([moved])
    assert (r.scale, r.exp, r.track) == ("quick", "table2", "vision")
    _, md = vision_table("table2", [str(moved)], PAPER)
    assert "Scale `quick`" in md
