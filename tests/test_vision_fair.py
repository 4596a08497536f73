"""Issue #12's fair views of the vision and LM tracks (tables vision_fair, lm_fair: lpa_core/report/fair.py track_fair)
on synthetic run folders written with the run contract (finish_run). Vision: validation accuracy climbs linearly to
A_p at the last epoch (Simultaneous 80, LPA 90, Sequential 40: it never reaches Simultaneous's final accuracy), test
accuracy at depth d is A_p d / L (+ seed noise), and an eqflops Simultaneous (2x the epochs and FLOPs) reaches 85."""
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lpa_core import runs as contract
from lpa_core.cli import main
from lpa_core.report.load import load
from lpa_core.report.tables import TABLES

ROOT = Path(__file__).resolve().parents[1]
PAPER = str(ROOT / "config" / "paper_results.csv")
SEEDS, L, E = [0, 1, 2], 4, 10
ACC = {"simultaneous": 80.0, "lpa": 90.0, "sequential": 40.0}
STEPS = {"simultaneous": 10, "lpa": 50, "sequential": 10}  # optimizer steps per epoch


def noise(*key):
    return 0.5 * np.random.default_rng(zlib.crc32(repr(key).encode())).standard_normal()


def make_run(d, paradigm, acc, exp="table2", epochs=E, track="vision", seed=0, flops_per_step=1e9, val=True):
    """One finished run folder (one dataset, one seed: the vision and LM tracks' layout)."""
    ds, arch, lower = ("fashion_mnist", "resnet10_w16", False) if track == "vision" else ("pydoc", "lm_tiny", True)
    val_m, test = ("val_acc_pct", "test_acc_pct") if track == "vision" else ("dev_loss", "val_ppl")
    key = [exp, ds, arch, paradigm, seed]
    curve = lambda e: acc * e / epochs if not lower else 10 - acc * e / epochs / 10  # noqa: E731
    hist = [[*key, e, STEPS[paradigm] * e, 500 * e, flops_per_step * STEPS[paradigm] * e, 2.0 * e, 0.1, m, v]
            for e in range(1, epochs + 1) for m, v in ((val_m, curve(e)), (test, curve(e) + noise(paradigm, seed, e)))[1 - val:]]
    lw = [[*key, k, test, acc * k / L + noise(exp, paradigm, seed, k), "ok"] for k in range(1, L + 1)]
    summ = [[*key, "ok", STEPS[paradigm] * epochs, flops_per_step * STEPS[paradigm] * epochs, L]]
    d.mkdir(parents=True)
    k = "exp,dataset,arch,paradigm,seed"
    for name, cols, rows in (("history", f"{k},epoch,steps,samples,flops,wall_s,lr,metric,value", hist),
                             ("layerwise", f"{k},depth,metric,value,status", lw), ("summary", f"{k},status,steps,flops,n_blocks", summ)):
        (d / f"{name}.csv").write_text(cols + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    cfg = dict(exp=exp, arch=arch, datasets=[ds], seeds=[seed], paradigm=paradigm, epochs=epochs, lr=0.05, topology="cascade")
    info = dict(config=cfg, runs=[dict(dataset=ds, seed=seed, status="ok")], wall_s=2.0 * epochs, git_commit="test",
                hardware="test", start="2026-12-01T00:00:00+00:00", end="2026-12-01T00:01:00+00:00")
    contract.finish_run(d, info, track, "quick", exp)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("vfair") / "quick"
    for par, acc in ACC.items():
        for s in SEEDS:
            make_run(root / "table2" / par / f"seed{s}", par, acc, seed=s)
    for s in SEEDS:  # Simultaneous for LPA's FLOPs: twice the epochs 2.5x the FLOPs per step: LPA's FLOPs (5x Simultaneous's)
        make_run(root / "eqflops" / f"seed{s}", "simultaneous", 85.0, "eqflops", 2 * E, seed=s, flops_per_step=2.5e9)
    return root


@pytest.fixture(scope="module")
def table(tree):
    return TABLES["vision_fair"](load([tree]), PAPER, {"resnet10_w16": "resnet18"})


def test_columns_and_views(table):
    tab, md = table
    assert {"view", "dataset", "arch", "depth", "paradigm", "protocol", "metric", "mean", "ci_low", "ci_high", "n_seeds",
            "ratio", "ratio_low", "ratio_high", "verdict", "target_frac", "target_epoch", "target_val_acc_pct", "reached",
            "n_reached", "n_runs", "median_steps", "median_flops", "median_seconds"} <= set(tab.columns)
    assert set(tab.view) == {"time_to_target", "equal_compute"}
    assert "## Time to target" in md and "## Equal compute, every depth" in md and "`resnet10_w16` for `resnet18`" in md


def test_time_to_target(table):
    t = table[0]
    t = t[t.view == "time_to_target"].set_index(["target_frac", "protocol", "paradigm"])
    assert list(t.loc[(1.0, "equal_epochs", "simultaneous"), ["target_epoch", "target_val_acc_pct"]]) == [10, pytest.approx(80.0)]
    for frac, epoch in ((0.1, 1), (0.3, 3), (1.0, 10)):  # a target Simultaneous reached is reached by itself, then
        r = t.loc[(frac, "equal_epochs", "simultaneous")]
        assert (r.reached, r.median_steps, r.median_seconds) == ("3/3", 10 * epoch, 2.0 * epoch)
        assert r.median_flops == pytest.approx(1e10 * epoch)
    lpa = t.loc[(0.3, "equal_epochs", "lpa")]  # 24 % at epoch 3 of 10 -> LPA (90 at epoch 10) at epoch 3: 27 >= 24
    assert (lpa.reached, lpa.median_steps) == ("3/3", 150)
    seq = t.loc[(1.0, "equal_epochs", "sequential")]  # never: counted, not dropped
    assert (seq.reached, seq.n_reached) == ("0/3", 0) and np.isnan(seq.median_steps)
    eq = t.loc[(1.0, "equal_flops", "simultaneous")]  # 80 at epoch 19 of 20 (85 x 19 / 20 = 80.75)
    assert (eq.reached, eq.median_steps) == ("3/3", 190)
    assert "0/3 · never" in table[1]


def test_equal_compute(table):
    t = table[0]
    t = t[t.view == "equal_compute"]
    acc = t[(t.metric == "test_acc_pct") & (t.depth == L)].set_index(["protocol", "paradigm"])
    assert set(acc.index) == {("equal_epochs", p) for p in ACC} | {("equal_flops", "simultaneous"), ("equal_flops", "lpa")}
    assert acc.loc[("equal_epochs", "lpa"), "ratio"] == pytest.approx(90 / 80, rel=0.02)
    r = acc.loc[("equal_flops", "lpa")]  # against the eqflops Simultaneous, paired seeds, a real interval
    assert r.ratio == pytest.approx(90 / 85, rel=0.02) and r.ratio_low < r.ratio < r.ratio_high and r.verdict == "reproduced"
    assert acc.loc[("equal_epochs", "sequential"), "verdict"] == "not reproduced"
    assert acc.loc[("equal_epochs", "simultaneous"), "verdict"] == ""
    assert sorted(set(t[t.metric == "test_acc_pct"].depth)) == list(range(1, L + 1))  # every depth
    fl = t[t.metric == "flops"].set_index(["protocol", "paradigm"]).ratio
    assert fl[("equal_flops", "lpa")] == pytest.approx(1.0) and fl[("equal_epochs", "lpa")] == pytest.approx(5.0)


def test_one_seed_has_no_interval(tree, tmp_path):
    runs = [r for r in load([tree]) if r.cfg["seeds"] == [0]]
    tab, md = TABLES["vision_fair"](runs, PAPER)
    ec = tab[tab.view == "equal_compute"]
    assert ec.ci_low.isna().all() and ec.ratio_low.isna().all() and set(ec.verdict) <= {"", "inconclusive"}


def test_no_validation_history_leaves_time_to_target_out(tmp_path):
    for par, acc in ACC.items():  # val_frac 0 (scale cpu's runs): no val_* rows in history
        make_run(tmp_path / par, par, acc, val=False)
    tab, md = TABLES["vision_fair"](load([tmp_path]), PAPER)
    assert set(tab.view) == {"equal_compute"} and "Left out: no Simultaneous run" in md


def test_damaged_run_is_one_error(tree, tmp_path, capsys):
    import shutil

    root = tmp_path / "quick"
    shutil.copytree(tree, root)
    f = root / "eqflops" / "seed1" / "history.csv"
    f.write_text(f.read_text()[:-30])
    assert main(["table", "vision_fair", "--runs", str(root), "--paper", PAPER, "--out-csv", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(f) in err and len(err.splitlines()) == 1


def test_lm_fair_on_the_development_loss(tmp_path):
    for par, acc in ACC.items():
        for s in SEEDS[:2]:
            make_run(tmp_path / par / f"seed{s}", par, acc, "lm", track="lm", seed=s)
    tab, md = TABLES["lm_fair"](load([tmp_path]), PAPER)
    t = tab[tab.view == "time_to_target"].set_index(["target_frac", "paradigm"])
    assert "target_dev_loss" in tab and t.loc[(1.0, "simultaneous"), "target_dev_loss"] == pytest.approx(2.0)
    assert t.loc[(1.0, "simultaneous"), "reached"] == "2/2" and t.loc[(1.0, "lpa"), "median_steps"] == 50 * 9  # 10 - 9 x 0.9 <= 2
    assert t.loc[(1.0, "sequential"), "n_reached"] == 0 and set(tab.topology.dropna()) == {"cascade"}
    ec = tab[(tab.view == "equal_compute") & (tab.metric == "val_ppl") & (tab.paradigm == "lpa")]
    assert len(ec) == L and (ec.protocol == "equal_epochs").all()


def test_report_shows_the_fair_views(table, tmp_path):
    from lpa_core.report import html

    tab, md = table
    (tmp_path / "vision_fair.csv").write_text(tab.to_csv(index=False))
    page, _ = html.build(html.Ctx(tables=[tmp_path]))
    assert "Vision, issue 12" in page and "Equal compute, full depth" in page and "Time to target" in page
