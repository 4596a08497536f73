"""Issue 12's core: the validation sample, per-run learning rates (trials in one vectorised job), FLOPs accounting
and the tune command (trials on validation, the pick, equal-compute matching)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from lpa_core import runs, tune
from lpa_core.config import TrainConfig
from lpa_core.data import make_surface, make_val
from lpa_core.train import train

QUIET = lambda msg: None  # noqa: E731
torch.set_num_threads(1)


def cfg(**kw):
    base = dict(datasets=("saddle", "high_freq"), seeds=(0,), depth=4, width=6, n_train=200, n_test=200, n_val=100,
                batch_size=50, epochs=2, lr=1e-2, grid=8, eval_every=1, ckpt_every_s=1e9, adaptive_warmup=1)
    return TrainConfig(**{**base, **kw})


def frames(out, name="layerwise.csv"):
    return pd.read_csv(out / name)


def test_validation_points_are_their_own_draw_and_leave_train_and_test_as_they_were():
    xtr, ytr, xte, yte = make_surface("saddle", 300, 300, seed=3)
    xv, yv = make_val("saddle", 300, seed=3)
    assert torch.equal(make_surface("saddle", 300, 300, seed=3)[0], xtr)  # unchanged by the validation draw
    assert not any(torch.equal(xv, x) for x in (xtr, xte))
    assert torch.equal(make_val("saddle", 300, seed=3)[0], xv) and not torch.equal(make_val("saddle", 300, seed=4)[0], xv)
    assert torch.allclose(yv[:, 0], xv[:, 0] ** 2 - xv[:, 1] ** 2, atol=1e-6)


def test_history_has_validation_error_and_compute(tmp_path):
    train(cfg(), tmp_path / "r", tmp_path / "ck", log=QUIET)
    h = frames(tmp_path / "r", "history.csv")
    assert {"val_mse", "val_mae", "test_mse", "train_mse"} <= set(h.metric)
    assert (h.groupby(["dataset", "epoch"]).flops.nunique() == 1).all() and h.flops.min() > 0
    assert not (tmp_path / "r0").exists()
    train(cfg(n_val=0), tmp_path / "r0", tmp_path / "ck0", log=QUIET)
    assert "val_mse" not in set(frames(tmp_path / "r0", "history.csv").metric)


@pytest.mark.parametrize("paradigm,decay", [("simultaneous", 0.0), ("lpa", 0.1), ("adaptive_lpa", 0.0), ("layerdrop", 0.1)])
def test_trials_in_one_job_match_each_lr_trained_alone_bit_for_bit(tmp_path, paradigm, decay):
    """Per-run learning rates in the vectorised optimizer (masked steps: adaptive LPA, layer dropout) give every trial
    exactly the numbers, steps and FLOPs of a job of that lr alone."""
    lrs = (0.01, 0.002, 0.05)
    kw = dict(paradigm=paradigm, weight_decay=decay, epochs=3, batch_size=100 if paradigm == "adaptive_lpa" else 50)
    train(cfg(lrs=lrs, **kw), tmp_path / "g", tmp_path / "ckg", log=QUIET)
    g, gs = frames(tmp_path / "g"), frames(tmp_path / "g", "summary.csv")
    assert list(g.columns[:6]) == ["exp", "dataset", "arch", "paradigm", "seed", "base_lr"]
    for d in ("saddle", "high_freq"):
        for lr in lrs:
            out = tmp_path / f"{d}{lr}"
            train(cfg(datasets=(d,), lr=lr, **kw), out, tmp_path / f"ck{d}{lr}", log=QUIET)
            mine = g[(g.dataset == d) & (g.base_lr == lr)]
            assert mine.value.tolist() == frames(out).value.tolist()
            one, row = frames(out, "summary.csv"), gs[(gs.dataset == d) & (gs.base_lr == lr)]
            assert row[["steps", "flops"]].values.tolist() == one[["steps", "flops"]].values.tolist()
    assert g.groupby("base_lr").value.sum().nunique() == len(lrs)  # the rates did differ


def test_progress_lines_show_per_run_rates(tmp_path, monkeypatch):
    from lpa_core import task

    monkeypatch.setattr(task, "PROGRESS_S", 0.0)
    logs = []
    train(cfg(lrs=(0.01, 0.002), epochs=1), tmp_path / "g", tmp_path / "ckg", log=logs.append)
    assert any("lr 0.002..0.01" in m for m in logs)


def test_dataset_lrs_give_each_dataset_its_rate(tmp_path):
    train(cfg(dataset_lrs=(0.002, 0.03)), tmp_path / "g", tmp_path / "ckg", log=QUIET)
    train(cfg(datasets=("high_freq",), lr=0.03), tmp_path / "a", tmp_path / "cka", log=QUIET)
    g = frames(tmp_path / "g")
    assert g[g.dataset == "high_freq"].value.tolist() == frames(tmp_path / "a").value.tolist()
    assert runs.verify_run(tmp_path / "g")["runs"][0]["lr"] == 0.002


W, L = 6, 4
STEM, BLOCK, HEAD = 2 * 2 * W, 2 * 2 * W * W, 2 * W  # forward FLOPs per example (matmuls)


def F(d):
    return STEM + d * BLOCK + HEAD


def step(d, heads=1):  # forward to depth d with `heads` head passes, every layer trained: F + (F - stem) + F
    f = F(d) + (heads - 1) * HEAD
    return 3 * f - STEM


@pytest.mark.parametrize("fast", ["1", "0"])
@pytest.mark.parametrize("paradigm,per_example", [
    ("simultaneous", step(L)),
    ("lpa", sum(step(d) for d in range(1, L + 1)) + step(L)),
    ("deep_supervision", step(L, heads=L)),
])
def test_flops_are_forward_plus_twice_the_backward_path(tmp_path, monkeypatch, fast, paradigm, per_example):
    monkeypatch.setenv("LPA_FAST", fast)
    train(cfg(paradigm=paradigm, epochs=2, eval_every=1), tmp_path / "r", tmp_path / "ck", log=QUIET)
    s = frames(tmp_path / "r", "summary.csv")
    assert s.flops.tolist() == [2 * 200 * per_example] * 2


def test_a_frozen_prefix_gets_no_backward_and_evaluation_is_free(tmp_path):
    """Sequential trains stem, block i and head with blocks < i frozen: their input gradient is computed (the stem
    trains), their weight gradient is not. Evaluating every epoch or once counts the same."""
    for every in (1, 2):
        out = tmp_path / f"e{every}"
        train(cfg(paradigm="sequential", datasets=("saddle",), epochs=2, eval_every=every), out, tmp_path / f"ck{every}", log=QUIET)
        s = frames(out, "summary.csv")
        # 8 batches over 4 blocks: 2 batches per stage
        want = sum(2 * 50 * (step(i) - (i - 1) * BLOCK) for i in range(1, L + 1))
        assert s.flops.tolist() == [want]


def test_trial_lrs_cover_the_two_decades_evenly_and_vdc_keeps_the_older_points():
    lrs = tune.trial_lrs(0.01, 6)  # centred: one point in the middle of each sixth of the log space
    gaps = np.diff(np.log10(lrs))
    assert np.allclose(gaps, 1 / 3) and np.log10(lrs[0]) == pytest.approx(-2 - 5 / 6)
    assert np.log10(lrs[0]) + np.log10(lrs[-1]) == pytest.approx(-4)  # symmetric about the recipe
    assert tune.trial_lrs(0.01, 3)[1] == pytest.approx(0.01)  # an odd count has the recipe's lr in the middle
    old = tune.trial_lrs(0.01, 6, points="vdc")  # van der Corput: the recipe first, 10^-0.75 .. 10^+0.5 of it
    assert old[0] == 0.01 and min(old) == pytest.approx(0.01 * 10 ** -0.75) and max(old) == pytest.approx(0.01 * 10 ** 0.5)


def test_tune_picks_on_validation_trains_the_seeds_and_skips_what_is_done(tmp_path):
    args = ["--out", str(tmp_path / "t"), "--ckpt-dir", str(tmp_path / "ck"), "--trials", "3", "--paradigm", "lpa",
            "--datasets", "saddle,high_freq", "--seeds", "0,1", "--depth", "4", "--width", "6", "--n-train", "200",
            "--n-test", "200", "--n-val", "100", "--batch-size", "50", "--epochs", "2", "--eval-every", "1"]
    tune.tune(args, log=QUIET)
    t = json.loads((tmp_path / "t/tune.json").read_text())
    trials = frames(tmp_path / "t/trials", "history.csv")
    last = trials[(trials.metric == "val_mse") & (trials.epoch == 2)]
    for d in ("saddle", "high_freq"):
        assert t["picks"][d] == last[last.dataset == d].sort_values("value").base_lr.iloc[0]
        assert t["val"][d] == [last[(last.dataset == d) & (last.base_lr == lr)].value.iloc[0] for lr in t["lrs"]]
    final = runs.verify_run(tmp_path / "t/final")
    assert final["config"]["dataset_lrs"] == [t["picks"]["saddle"], t["picks"]["high_freq"]]
    assert final["config"]["seeds"] == [0, 1] and runs.verify_run(tmp_path / "t/trials")["config"]["seeds"] == [0]
    assert t["request"] == tune.request(args + ["--threads", "2"])[1]  # execution keys are not part of it
    for phase, epochs in (("trials", {2}), ("final", {1, 2})):  # lean: validation rows only, no grid
        h = frames(tmp_path / "t" / phase, "history.csv")
        assert set(h.metric) == {"val_mse"} and set(h.epoch) == epochs
        assert not (tmp_path / "t" / phase / "grid.npz").exists()
        assert set(runs.verify_run(tmp_path / "t" / phase)["target_sd"]) == {"saddle", "high_freq"}
    logs = []
    tune.tune(args, log=logs.append)
    assert sum("done already" in m for m in logs) == 2


def test_history_last_keeps_the_final_evaluation_only_and_is_part_of_the_request(tmp_path):
    args = ["--out", str(tmp_path / "t"), "--trials", "2", "--paradigm", "simultaneous", "--datasets", "saddle",
            "--seeds", "0", "--depth", "2", "--width", "4", "--n-train", "100", "--n-test", "100", "--n-val", "50",
            "--batch-size", "50", "--epochs", "3", "--eval-every", "1"]
    assert "history" not in tune.request(args)[1]  # the default: tune folders made before the option stay fresh
    tune.tune(args + ["--history", "last"], log=QUIET)
    assert json.loads((tmp_path / "t/tune.json").read_text())["request"]["history"] == "last"
    for phase in ("trials", "final"):
        assert set(frames(tmp_path / "t" / phase, "history.csv").epoch) == {3}
    assert "last" in runs.verify_run(tmp_path / "t/final")["lean"]


def test_a_diverged_trial_is_never_picked(tmp_path):
    c = cfg(lrs=(1e3, 1e-2), datasets=("saddle",))
    train(c, tmp_path / "t", tmp_path / "ck", log=QUIET)
    picks, val = tune.pick(tmp_path / "t", c)
    assert picks["saddle"] == 1e-2 and not val["saddle"][0] < float("inf")


def test_matched_runs_take_the_compute_of_the_run_they_match(tmp_path):
    train(cfg(paradigm="lpa", datasets=("saddle",), epochs=2), tmp_path / "lpa", tmp_path / "ck", log=QUIET)
    lpa = frames(tmp_path / "lpa", "summary.csv")
    sim = cfg(paradigm="simultaneous", datasets=("saddle",))
    steps, _ = tune.matched_epochs(sim, tmp_path / "lpa", "steps")
    flops, _ = tune.matched_epochs(sim, tmp_path / "lpa", "flops")
    assert steps == 2 * (L + 1)  # L prefix steps and the full pass per batch
    assert flops == round(lpa.flops[0] / (4 * 50 * step(L)))
    args = ["--out", str(tmp_path / "t"), "--trials", "2", "--match-dir", str(tmp_path / "lpa"), "--match", "steps",
            "--paradigm", "simultaneous", "--datasets", "saddle", "--seeds", "0", "--depth", str(L), "--width", "6",
            "--n-train", "200", "--n-test", "200", "--n-val", "100", "--batch-size", "50", "--epochs", "2", "--eval-every", "1"]
    tune.tune(args, log=QUIET)
    # as many points on its curve as the LPA run it matches: every (L + 1)th of its 2 (L + 1) epochs
    assert set(frames(tmp_path / "t/final", "history.csv").epoch) == {L + 1, 2 * (L + 1)}
    assert json.loads((tmp_path / "t/tune.json").read_text())["match"]["stride"] == L + 1
    assert not (tmp_path / "t/trials/layerwise.csv").exists()  # the trials' test errors: nothing may read them
    assert "layerwise.csv" not in runs.verify_run(tmp_path / "t/trials")["manifest"]


@pytest.mark.parametrize("bad,key", [(dict(lrs=(0.01, -1.0)), "lrs"), (dict(dataset_lrs=(0.01,)), "dataset_lrs"),
                                     (dict(lrs=(0.01,), dataset_lrs=(0.01, 0.02)), "lrs/dataset_lrs"),
                                     (dict(lrs=(0.01, 0.01)), "lrs"), (dict(n_val=-1), "n_val")])
def test_bad_rates_are_one_line_naming_the_key(bad, key):
    with pytest.raises(ValueError, match=f"^{key}:"):
        cfg(**bad)


def test_rates_on_the_command_line_are_floats():
    assert TrainConfig.parse_options(["--lrs", "0.01,1e-3", "--dataset-lrs", "2"]) == {"lrs": (0.01, 1e-3), "dataset_lrs": (2.0,)}
    assert TrainConfig.parse_options(["--lrs", ""]) == {"lrs": ()}  # a config written back key by key (an empty list)
