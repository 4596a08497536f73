"""ANCRé Case Study 3.1 (lpa_core/linear_case.py): topology definitions, hand-written gradients, the 0:1 vs 0:2
gap, ANCRé's normalisation, and the command's outputs. A few seconds in all."""
import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch

from lpa_core import linear_case as lc

TINY = lc.Case(d=4, rank=2, n=6, steps=1500)  # GF time 75


def end_to_end(topology, W):
    """M for one run of depth len(W), through the batched code."""
    K = len(W)
    Wb, fixed, learn, live, X, Y = lc.build([(K, topology, 0)], TINY)
    Wb[0] = W
    P = np.where(learn, lc.ingoing_softmax(np.zeros_like(fixed), TINY.tau), fixed)
    return lc.forward(Wb, P)[0, K]


def test_topologies_match_the_paper_formulas():
    rng = np.random.default_rng(0)
    W1, W2, W3 = W = rng.standard_normal((3, 4, 4))
    I = np.eye(4)
    assert np.allclose(end_to_end("none", W), W3 @ W2 @ W1)
    assert np.allclose(end_to_end("0:1", W), W3 @ W2 @ (W1 + I))          # Eq. 2
    assert np.allclose(end_to_end("0:2", W), W3 @ (W2 @ W1 + I))          # Eq. 4
    assert np.allclose(end_to_end("cascade", W), (W3 + I) @ (W2 + I) @ (W1 + I))
    assert np.allclose(end_to_end("1:2+2:3", np.concatenate([W, W[:1]])), W1 @ (W3 + I) @ (W2 + I) @ W1)
    with pytest.raises(ValueError, match="0 <= i < j <= K"):
        lc.shortcuts("2:4", 3)


def test_shallower_runs_embedded_in_a_deeper_batch_are_unchanged():
    c = lc.Case(d=4, rank=2, n=6, steps=200)
    alone, _, _ = lc.train([(2, "none", 0), (3, "0:1", 1)], c)
    mixed, _, _ = lc.train([(2, "none", 0), (3, "0:1", 1), (4, "ancre", 0)], c)
    assert np.allclose(alone, mixed[:2], rtol=1e-10, atol=0)


def test_hand_gradients_match_autograd():
    rng = np.random.default_rng(1)
    B, K, d = 3, 3, 4
    W = rng.standard_normal((B, K, d, d)) * 0.5
    logits = rng.standard_normal((B, K + 1, K + 1))
    A = rng.standard_normal((B, d, d))
    P = lc.ingoing_softmax(logits, 0.1)
    xs = lc.forward(W, P)
    gW, gP = lc.backward(W, P, xs, xs[:, K] - A)
    gc = lc.softmax_backward(P, gP, 0.1)

    Wt, ct = torch.tensor(W, requires_grad=True), torch.tensor(logits, requires_grad=True)
    mask = torch.ones(K + 1, K + 1, dtype=torch.bool).triu(1)
    Pt = torch.softmax((ct / 0.1).masked_fill(~mask, -torch.inf), dim=1).nan_to_num() * mask
    x = [torch.eye(d, dtype=torch.float64).expand(B, d, d)]
    for j in range(1, K + 1):
        x.append(Wt[:, j - 1] @ x[-1] + sum(Pt[:, i, j, None, None] * x[i] for i in range(j)))
    (0.5 * ((x[-1] - torch.tensor(A)) ** 2).sum()).backward()
    assert np.allclose(gW, Wt.grad.numpy(), atol=1e-10)
    assert np.allclose(gc, ct.grad.numpy(), atol=1e-10)


def test_inputs_whitened_and_target_rank_deficient():
    X, A, Y = lc.make_problem(3, TINY)
    assert np.allclose(X @ X.T, np.eye(TINY.d))
    assert np.linalg.matrix_rank(A) == TINY.rank < TINY.d
    assert np.allclose(Y, A @ X)


def test_zero_two_ends_far_below_zero_one():
    """Thms 3.2/3.3: same steps, same init: 0:2 (linear) ends orders of magnitude below 0:1 (sublinear)."""
    H, its, _ = lc.train([(3, "0:1", s) for s in (0, 1)] + [(3, "0:2", s) for s in (0, 1)], TINY)
    assert (H[2:, -1] < 1e-3 * H[:2, -1]).all()
    assert lc.fit(its, H[0], TINY)["shape"] == "sublinear"
    assert lc.fit(its, H[2], TINY)["shape"] == "linear"


def test_ancre_coefficients_sum_to_one_per_ingoing_node():
    P = lc.ingoing_softmax(np.random.default_rng(2).standard_normal((5, 5, 5)) * 3, 0.1)
    assert np.allclose(P.sum(1)[:, 1:], 1.0)                     # Eq. 7, every node j = 1..K
    assert (P >= 0).all() and np.allclose(np.tril(P), 0.0)       # only shortcuts i < j
    _, _, Pend = lc.train([(3, "ancre", 0), (4, "ancre", 0)], lc.Case(d=4, rank=2, n=6, steps=300))
    assert np.allclose(Pend[0, :4, 1:4].sum(0), 1.0) and np.allclose(Pend[1, :, 1:].sum(0), 1.0)
    assert not np.allclose(Pend[1, :, 2:], lc.ingoing_softmax(np.zeros((5, 5)), 0.1)[:, 2:])  # it learned


def test_plain_two_layer_loss_decreases():
    H, _, _ = lc.train([(2, "none", 0)], lc.Case(d=4, rank=2, n=6, steps=400))
    assert H[0, -1] < 1e-2 * H[0, 0]
    assert (np.diff(H[0]) <= 1e-12).all()


def test_command_writes_documented_outputs(tmp_path):
    p = argparse.ArgumentParser()
    lc.add_commands(p.add_subparsers(dest="cmd"))
    out = {k: tmp_path / n for k, n in dict(csv="c.csv", summary="s.csv", fig="f.png").items()}
    args = p.parse_args(["ancre-case", "--scale", "quick", "--steps", "60", "--seeds", "0",
                         "--out-csv", str(out["csv"]), "--out-summary", str(out["summary"]), "--out-fig", str(out["fig"])])
    args.func(args)
    curves, summary = pd.read_csv(out["csv"]), pd.read_csv(out["summary"])
    assert list(curves.columns) == lc.COLUMNS == ["panel", "topology", "K", "seed", "iteration", "time", "loss"]
    assert list(summary.columns) == lc.SUMMARY_COLUMNS
    assert set(curves.panel) == {"a", "b", "c"} and {"0:1", "0:2", "ancre", "cascade", "1:2+2:3"} <= set(curves.topology)
    assert curves.iteration.max() == 60 and (curves.loss > 0).all()
    run = json.loads((tmp_path / "c.json").read_text())
    assert {"git_commit", "hardware", "command", "date", "case", "ancre_p_final"} <= set(run)
    assert out["fig"].stat().st_size > 10_000
    claims = pd.read_csv(tmp_path / "c_claims.csv")
    assert list(claims.columns) == lc.CLAIM_COLUMNS and set(claims.claim) == set(lc.CASE_CLAIMS)
    assert set(claims.verdict) <= {"reproduced", "not reproduced"} and "0:2+2:3" in set(curves.topology)
    assert [c["claim"] for c in run["claims"]] == list(lc.CASE_CLAIMS)


def curves_of(finals, steps=(0, 10, 20)):
    """Synthetic ancre_case.csv rows, panel b, K = 3: {topology: [final loss per seed]}, each from 1.0 at 0."""
    rows = [("b", t, 3, s, it, it * 0.05, 1.0 if it == 0 else f ** (it / steps[-1]))
            for t, fs in finals.items() for s, f in enumerate(fs) for it in steps]
    return pd.DataFrame(rows, columns=lc.COLUMNS)


def test_case_claims_judge_the_curves():
    """a faster than b: a's final loss lower in a majority of seeds; a claim holds when all its pairs do."""
    paper = curves_of({"none": [1e-2] * 3, "cascade": [1e-4] * 3, "0:1": [1e-6, 1e-6, 1e-3]})
    got = {j["claim"]: j for j in lc.case_claims(paper)}
    assert got["case_01_faster_than_cascade"]["verdict"] == "reproduced"
    p = got["case_01_faster_than_cascade"]["pairs"][0]
    assert (p["seeds"], p["seeds_faster"], p["final_faster"], p["final_slower"]) == (3, 2, 1e-6, 1e-4)
    assert (p["it_1e-2_faster"], p["it_1e-2_slower"]) == (10, 10) and p["it_1e-4_faster"] == 20
    assert got["case_order_none_cascade_01"]["verdict"] == "reproduced"
    ours = curves_of({"none": [1e-5] * 3, "cascade": [1e-4] * 3, "0:1": [1e-3] * 3})  # the cascade beats 0:1 here
    got = {j["claim"]: j["verdict"] for j in lc.case_claims(ours)}
    assert got == {"case_01_faster_than_cascade": "not reproduced", "case_order_none_cascade_01": "not reproduced"}
    missing = {j["claim"]: j["verdict"] for j in lc.case_claims(curves_of({"none": [1e-2], "cascade": [1e-4]}))}
    assert missing == {"case_01_faster_than_cascade": "not run", "case_order_none_cascade_01": "not run"}
