"""ANCRé Case Study 3.1 / Figure 2: residual topology and the convergence of deep linear networks.

    python -m lpa_core ancre-case                 # scale paper: ~15 s of training on one core
    python -m lpa_core ancre-case --scale quick   # 2 seeds, 2000 steps: ~2 s of training

Model. f(x) = x_K with x_0 = x and, for layer j = 1..K,

    x_j = W_j x_{j-1} + sum_{i<j} p_ij x_i        (W_j: d x d, no bias, no nonlinearity)

A shortcut i:j (0 <= i < j <= K) "bridges the outputs of layers i and j" (Sec 3.1): it adds x_i, the output of
layer i (x_0 = the input), to the output of layer j, with p_ij = 1; p_ij = 0 where there is no shortcut. This
matches the paper's formulas: 0:1 gives f = W3 W2 (W1 + I) x (Eq. 2), 0:2 gives W3 (W2 W1 + I) x (Eq. 4), and
cascade = {0:1, 1:2, ..., K-1:K} gives (W_K + I)...(W_1 + I) x (Fig. 1b). 0:K adds the input to the output.
ANCRé (Sec 4.1) keeps every shortcut i:j, 0 <= i < j <= K, and no fixed cascade besides (x_j = W_j x_{j-1} +
sum_i p_ij x_i). Its coefficients are p_ij = softmax_i(c_ij / tau) over the ingoing i = 0..j-1 (Eq. 7-8, ingoing
normalisation). Eq. 8's printed denominator starts at k = 1; we sum over every ingoing i = 0..j-1 so that Eq. 7
holds. tau = 0.1 and c_ij = 0 at the start (uniform p). Node 1 has one ingoing shortcut, so p_01 = 1 always. The
logits take plain GD steps of c_lr x lr.

Data. Whitened inputs X (d x n, n >= d, X X^T = I: orthonormal rows) and Y = A X for a fixed map A = U S V^T, with
random orthogonal U, V and rank r < d (S = linspace(s_max, s_min) on r entries, 0 on the rest). This is the
rank-deficient target of Theorem B.1's construction: with a full-rank A every topology ends up converging linearly
and 0:1's 1/t^2 tail cannot appear. Loss L = 1/2 ||f(X) - Y||_F^2 (= 1/2 ||M - A||_F^2 for the end-to-end map M,
since X X^T = I). Training is plain full-batch GD with a small step lr (close to gradient flow: halving or
quartering lr gives the same curves against GF time t = iteration x lr) from a small initialisation W_k = init x
(Haar-random orthogonal). That initialisation is balanced (W_{k+1}^T W_{k+1} = W_k W_k^T), which is what the 0:1
lower bound needs (Thm B.1 takes W2(0) = W3(0)); an i.i.d. Gaussian one (init_kind="gaussian") leaves an O(init^2)
imbalance that turns 0:1's 1/t^2 tail into slow linear convergence after t ~ 1 / init^2. Every topology of a seed
starts from the same W's and sees the same A.

All runs, every (depth, topology, seed), train as one batch of d x d matrices (numpy, gradients by hand: the
recursion is linear). A net of depth K < Kmax runs as depth Kmax with frozen W = 0 layers behind identity
shortcuts. Outputs: a tidy CSV (panel, topology, K, seed, iteration, time, loss); a per-(panel, topology) summary
(final loss, the slope of ln loss vs iteration and vs ln iteration over the last part of training, and a shape
verdict); a JSON sidecar (config, provenance, summary, learned ANCRé p_ij); and the figure (panels a, b, c).
"""
import argparse
import itertools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lpa_core import io

# ----------------------------------------------------------------------------- config


@dataclass
class Case:
    # problem
    d: int = 8              # width: input = hidden = output dimension
    rank: int = 4           # rank r < d of the target map A (rank-deficient, as in Thm B.1's instance)
    n: int = 16             # samples, n >= d, whitened (X X^T = I)
    s_max: float = 2.0      # largest singular value of A
    s_min: float = 1.0      # smallest nonzero singular value of A
    init: float = 0.3       # scale of the small initialisation: W_k = init x (random orthogonal)
    init_kind: str = "orthogonal"  # orthogonal (balanced: W_k^T W_k = init^2 I) or gaussian (N(0, init^2 / d))
    # optimisation
    lr: float = 0.05        # GD step = GF time per iteration (small next to 1 / the fastest rate, ~2)
    steps: int = 8000       # GD iterations; GF time t = steps x lr = 400
    tau: float = 0.1        # ANCRé softmax temperature (the paper's default)
    c_lr: float = 1.0       # ANCRé logit step as a multiple of lr (1: plain GD on every parameter)
    # convergence fits
    fit_from: float = 0.5   # fit over iterations [fit_from x T, T], T = the last one above the floor
    floor: float = 1e-24    # loss, relative to the initial one, below which float64 rounding dominates


SCALES = {  # overrides of Case per scale, and the seeds
    "paper": dict(case={}, seeds=[0, 1, 2, 3, 4]),
    "quick": dict(case=dict(steps=2000), seeds=[0, 1]),
}
N_LOG = 100  # logged iterations per curve (log-spaced, plus 0 and the last)

# Figure 2's panels: {K: topologies}. For (c) the text names only the pair 1:2+2:3 (Sec 4) and the single 0:3;
# the authors' README names 0:2+2:3 the best 4-layer layout; the other pairs drawn are in neither. We show those
# two and eight pairs chosen to span what pairs do here: cascade pieces (0:1+1:2, 2:3+3:4), 0:3 plus a second
# shortcut (0:1+0:3, 0:3+3:4, 0:3+1:4, the fastest), others (1:3+2:4, 0:2+2:4) and an identity added at the output
# (0:4+3:4). `pairs="all"` runs all 45 pairs of K = 4.
PAIRS_SHOWN = ["1:2+2:3", "0:2+2:3", "0:1+1:2", "2:3+3:4", "1:3+2:4", "0:2+2:4", "0:1+0:3", "0:3+3:4", "0:3+1:4",
               "0:4+3:4"]
ALL_PAIRS = ["+".join(p) for p in itertools.combinations([f"{i}:{j}" for j in range(1, 5) for i in range(j)], 2)]


def panels(pairs="shown"):
    if pairs not in ("shown", "all"):
        raise ValueError(f"pairs: unknown '{pairs}' (valid: shown, all)")
    c = PAIRS_SHOWN + [p for p in ALL_PAIRS if p not in PAIRS_SHOWN and pairs == "all"]
    return {"a": {2: ["none"], 3: ["none"], 4: ["none"]},
            "b": {3: ["none", "cascade", "0:1", "0:2", "ancre"]},
            "c": {4: ["0:3", "ancre"] + c}}


COLUMNS = ["panel", "topology", "K", "seed", "iteration", "time", "loss"]
SUMMARY_COLUMNS = ["panel", "topology", "K", "n_seeds", "steps", "lr", "final_loss", "final_loss_max",
                   "fit_start", "fit_end", "loglin_slope", "rate_per_time", "loglog_slope", "r2_loglin", "r2_loglog",
                   "shape", "shape_counts", "inv_t2"]


# ----------------------------------------------------------------------------- topology
def shortcuts(topology, K):
    """The (i, j) shortcuts of a named topology: 'none', 'cascade', 'ancre' (every i < j), or 'i:j+k:l+...'."""
    if topology == "none":
        return set()
    if topology == "cascade":
        return {(j - 1, j) for j in range(1, K + 1)}
    if topology == "ancre":
        return {(i, j) for j in range(1, K + 1) for i in range(j)}
    out = set()
    for s in topology.split("+"):
        i, j = map(int, s.split(":"))
        if not 0 <= i < j <= K:
            raise ValueError(f"topology: shortcut '{s}' needs 0 <= i < j <= K = {K}")
        out.add((i, j))
    return out


def ingoing_softmax(logits, tau):
    """p_ij = exp(c_ij / tau) / sum_{k<j} exp(c_kj / tau) for i < j, 0 elsewhere. logits: (B, K+1, K+1)."""
    upper = np.triu(np.ones(logits.shape[-2:], bool), 1)
    z = np.where(upper, logits / tau, -np.inf)
    m = np.max(z, axis=-2, keepdims=True)
    e = np.exp(z - np.where(np.isfinite(m), m, 0.0))  # exp(-inf) = 0 off the mask
    return e / np.maximum(e.sum(-2, keepdims=True), 1e-300)  # column 0 has no ingoing shortcut: stays 0


def softmax_backward(P, gP, tau):
    """dL/dc from dL/dp through the ingoing softmax (P is zero off the mask, so nothing leaks there)."""
    return P * (gP - (P * gP).sum(-2, keepdims=True)) / tau


# ----------------------------------------------------------------------------- network
def forward(W, P):
    """Representations as maps of the input: x_0 = I, x_j = W_j x_{j-1} + sum_{i<j} P[:, i, j] x_i.
    W: (B, K, d, d), P: (B, K+1, K+1). Returns xs (B, K+1, d, d); xs[:, K] is the end-to-end map M."""
    B, K, d, _ = W.shape
    xs = np.zeros((B, K + 1, d, d))
    xs[:, 0] = np.eye(d)
    for j in range(1, K + 1):
        skip = P[:, None, :j, j] @ xs[:, :j].reshape(B, j, d * d)  # sum_i p_ij x_i, (B, 1, d*d)
        xs[:, j] = W[:, j - 1] @ xs[:, j - 1] + skip.reshape(B, d, d)
    return xs


def backward(W, P, xs, G_out):
    """Reverse mode through `forward`, given dL/dM = G_out (B, d, d). Returns dL/dW and dL/dP."""
    B, K, d, _ = W.shape
    G = np.zeros_like(xs)  # G[:, j] = dL/dx_j, complete once every k > j has been visited
    G[:, K] = G_out
    gW, gP = np.zeros_like(W), np.zeros_like(P)
    for j in range(K, 0, -1):
        gW[:, j - 1] = G[:, j] @ xs[:, j - 1].transpose(0, 2, 1)
        gP[:, :j, j] = (xs[:, :j].reshape(B, j, d * d) @ G[:, j].reshape(B, d * d, 1))[..., 0]
        G[:, :j] += P[:, :j, j, None, None] * G[:, j, None]
        G[:, j - 1] += W[:, j - 1].transpose(0, 2, 1) @ G[:, j]
    return gW, gP


# ----------------------------------------------------------------------------- data
def make_problem(seed, c):
    """Whitened X (d, n) with X X^T = I, target map A (d, d) of rank c.rank, Y = A X."""
    rng = np.random.default_rng(seed)
    ortho = lambda m, k: np.linalg.qr(rng.standard_normal((m, k)))[0]
    X = ortho(c.n, c.d).T  # orthonormal rows: X X^T = I_d
    s = np.zeros(c.d)
    s[:c.rank] = np.linspace(c.s_max, c.s_min, c.rank)
    A = ortho(c.d, c.d) @ np.diag(s) @ ortho(c.d, c.d).T
    return X, A, A @ X


def init_weights(seed, K, c):
    """K small d x d matrices; the same for every topology of a given (seed, K). 'orthogonal': init x Haar-random
    orthogonal, so consecutive factors are balanced (W_{k+1}^T W_{k+1} = W_k W_k^T), the condition under which the
    0:1 tail is 1/t^2 (Thm B.1 takes W2 = W3). 'gaussian': i.i.d. N(0, init^2 / d) entries, unbalanced by O(init^2),
    which turns that tail linear at a rate O(init^2) after t ~ 1 / init^2."""
    rng = np.random.default_rng([seed, K])
    G = rng.standard_normal((K, c.d, c.d))
    if c.init_kind == "gaussian":
        return G * c.init / np.sqrt(c.d)
    if c.init_kind != "orthogonal":
        raise ValueError(f"init_kind: unknown '{c.init_kind}' (valid: orthogonal, gaussian)")
    Q, R = np.linalg.qr(G)
    return c.init * Q * np.sign(np.diagonal(R, axis1=-2, axis2=-1))[:, None, :]  # Haar: fix the column signs


def build(runs, c):
    """Stack runs [(K, topology, seed), ...] into one depth-Kmax batch: W (B, Kmax, d, d), fixed 0/1 shortcut
    coefficients, learnable ANCRé columns, trainable-layer mask, X, Y. A run of depth K < Kmax gets layers
    K+1..Kmax frozen at W = 0 behind a fixed j-1:j shortcut (x_j = x_{j-1}): the same network as depth K."""
    Kmax, B = max(K for K, _, _ in runs), len(runs)
    W = np.zeros((B, Kmax, c.d, c.d))
    fixed = np.zeros((B, Kmax + 1, Kmax + 1))
    learn = np.zeros((B, 1, Kmax + 1), bool)  # ingoing nodes j whose p_.j ANCRé learns
    live = np.zeros((B, Kmax, 1, 1))          # 1 where layer k of run b trains
    for b, (K, topo, seed) in enumerate(runs):
        for i, j in shortcuts(topo, K) | {(j - 1, j) for j in range(K + 1, Kmax + 1)}:
            fixed[b, i, j] = 1.0
        learn[b, 0, 1:K + 1] = topo == "ancre"
        live[b, :K] = 1.0
        W[b, :K] = init_weights(seed, K, c)
    probs = {s: make_problem(s, c) for s in {s for _, _, s in runs}}
    X = np.stack([probs[s][0] for _, _, s in runs])
    Y = np.stack([probs[s][2] for _, _, s in runs])
    return W, fixed, learn, live, X, Y


# ----------------------------------------------------------------------------- training
def log_iterations(steps, n=N_LOG):
    return sorted({0, steps, *np.unique(np.geomspace(1, steps, n).astype(int)).tolist()})


def train(runs, c):
    """Full-batch GD on all runs [(K, topology, seed), ...] at once (independent runs sharing one loop).
    Returns the losses (runs, logged), the logged iterations and the final p_ij (runs, Kmax+1, Kmax+1)."""
    W, fixed, learn, live, X, Y = build(runs, c)
    K, Xt = W.shape[1], X.transpose(0, 2, 1)
    logits = np.zeros_like(fixed)  # ANCRé c_ij, start uniform
    logged = log_iterations(c.steps)
    want, hist = set(logged), []
    for it in range(c.steps + 1):
        P = np.where(learn, ingoing_softmax(logits, c.tau), fixed)
        xs = forward(W, P)
        R = xs[:, K] @ X - Y                         # residual f(X) - Y, (B, d, n)
        if it in want:
            hist.append(0.5 * (R * R).sum((1, 2)))   # L = 1/2 ||f(X) - Y||_F^2 per run
        if it == c.steps:
            break
        gW, gP = backward(W, P, xs, R @ Xt)          # dL/dM = (M X - Y) X^T
        W -= c.lr * live * gW
        logits -= c.c_lr * c.lr * learn * softmax_backward(P, gP, c.tau)
    return np.stack(hist, 1), logged, P


# ----------------------------------------------------------------------------- convergence fits
def r2(x, y):
    return float(np.corrcoef(x, y)[0, 1] ** 2) if len(x) > 2 and np.ptp(y) > 0 else np.nan


def fit(its, loss, c):
    """Straight-line fits of ln loss over the window [fit_from x T, T], T = the last logged iteration before the
    loss first drops below floor x loss[0] (float64 rounding): vs the iteration (loglin: linear convergence is a
    straight line, slope -rate x lr) and vs ln iteration (loglog: L ~ t^-p is a straight line, slope -p; 1/t^2 gives
    -2). shape: 'linear' if the loss reaches the floor or the loglin fit is the straighter (higher R^2);
    'sublinear' if the loglog one is; 'plateau' if ln loss moves by < 0.1 over the window; 'transient' if neither
    line fits (R^2 < 0.98: a jump such as a saddle escape inside the window)."""
    its, loss = np.asarray(its, float), np.asarray(loss, float)
    if not np.isfinite(loss).all():
        return dict(fit_start=0, fit_end=0, loglin_slope=np.nan, rate_per_time=np.nan, loglog_slope=np.nan,
                    r2_loglin=np.nan, r2_loglog=np.nan, shape="diverged")
    above = loss > c.floor * loss[0]
    end = len(loss) if above.all() else int(np.argmin(above))  # first index below the floor
    T = its[end - 1]
    win = (its >= c.fit_from * T) & (its > 0) & (np.arange(len(its)) < end)
    x, y = its[win], np.log(loss[win])
    loglin, loglog = (np.polyfit(x, y, 1)[0], np.polyfit(np.log(x), y, 1)[0]) if len(x) > 2 else (np.nan,) * 2
    rl, rg = r2(x, y), r2(np.log(x), y)
    if end < len(loss):
        shape = "linear"
    elif np.ptp(y) < 0.1:
        shape = "plateau"
    elif max(rl, rg) < 0.98:
        shape = "transient"
    else:
        shape = "linear" if rl > rg else "sublinear"
    return dict(fit_start=int(x.min()) if len(x) else 0, fit_end=int(T), loglin_slope=loglin,
                rate_per_time=-loglin / c.lr, loglog_slope=loglog, r2_loglin=rl, r2_loglog=rg, shape=shape)


def summarise(curves, logged, c):
    """One row per (panel, topology): median over seeds of the final loss and of each fitted number; the shape
    is the majority verdict over seeds (ties: the first seed's); inv_t2: the majority is sublinear with a loglog
    slope within 0.5 of -2 (Thm 3.2's 1/t^2)."""
    rows = []
    for (panel, K, topo), L in curves.items():
        fits = [fit(logged, l, c) for l in L]
        med = lambda k: float(np.median([f[k] for f in fits]))
        shapes = [f["shape"] for f in fits]
        shape = max(shapes, key=shapes.count)
        rows.append(dict(panel=panel, topology=topo, K=K, n_seeds=len(L), steps=c.steps, lr=c.lr,
                         final_loss=float(np.median(L[:, -1])), final_loss_max=float(L[:, -1].max()),
                         fit_start=int(med("fit_start")), fit_end=int(med("fit_end")),
                         loglin_slope=med("loglin_slope"), rate_per_time=med("rate_per_time"),
                         loglog_slope=med("loglog_slope"), r2_loglin=med("r2_loglin"), r2_loglog=med("r2_loglog"),
                         shape=shape, shape_counts="; ".join(f"{s}: {shapes.count(s)}" for s in dict.fromkeys(shapes)),
                         inv_t2=shape == "sublinear" and abs(med("loglog_slope") + 2) <= 0.5))
    return rows


# ----------------------------------------------------------------------------- experiment
def run(c, seeds, panels):
    """Every panel's (K, topology) x seeds as one batch (a pair that appears in several panels trains once).
    Returns {(panel, K, topology): (seeds, logged) losses}, the logged iterations, {(K, seed): ANCRé p_ij}."""
    keys = list(dict.fromkeys((K, t) for spec in panels.values() for K, topos in spec.items() for t in topos))
    runs = [(K, t, s) for K, t in keys for s in seeds]
    H, logged, P = train(runs, c)
    rows = {key: [b for b, r in enumerate(runs) if r[:2] == key] for key in keys}
    curves = {(panel, K, t): H[rows[(K, t)]] for panel, spec in panels.items() for K, ts in spec.items() for t in ts}
    ancre = {(K, s): P[b, :K + 1, :K + 1] for b, (K, t, s) in enumerate(runs) if t == "ancre"}
    return curves, logged, ancre


def tidy_rows(curves, logged, seeds, c):
    for (panel, K, topo), L in curves.items():
        for s, losses in zip(seeds, L):
            for it, v in zip(logged, losses):
                yield panel, topo, K, s, it, round(it * c.lr, 6), f"{v:.6e}"


# ----------------------------------------------------------------------------- claims
# Statements of Case Study 3.1 judged from the loss curves (ancre_case.csv), for any report to call: each claim is a
# list of (faster, slower) topologies of one panel and depth. Rule: topology a converges faster than b when a's loss
# at the last iteration is below b's in a majority of the seeds both ran (the paper's horizon, on the curves
# themselves); the evidence adds the seed-median final losses and the iterations each takes to reach 1e-2 and 1e-4
# of its initial loss, so an early lead that does not last shows.
CASE_CLAIMS = {
    "case_01_faster_than_cascade": dict(
        source="ANCRé Sec. 3.1, Fig. 2b", panel="b", K=3, pairs=[("0:1", "cascade")],
        statement="A 3-layer LNN with the single 0:1 shortcut converges faster than with the cascade."),
    "case_order_none_cascade_01": dict(
        source="ANCRé Sec. 3.1, Fig. 2b", panel="b", K=3, pairs=[("cascade", "none"), ("0:1", "cascade")],
        statement="Convergence speed at K = 3 orders no shortcut < cascade < 0:1 (the cascade 'accelerates the "
                  "convergence relative to no connection'; 0:1 is 'remarkably faster')."),
}
CLAIM_RULE = ("a faster than b: a's loss at the last iteration below b's in a majority of the seeds both ran "
              "(ancre_case.csv); every listed pair must hold")
CLAIM_COLUMNS = ["claim", "source", "statement", "rule", "verdict", "panel", "K", "faster", "slower", "seeds",
                 "seeds_faster", "final_faster", "final_slower", "it_1e-2_faster", "it_1e-2_slower",
                 "it_1e-4_faster", "it_1e-4_slower", "holds"]


def _first_below(its, loss, frac):
    hit = np.flatnonzero(loss <= frac * loss[0])
    return int(its[hit[0]]) if len(hit) else None


def compare_speed(curves, faster, slower, panel="b", K=3):
    """Evidence that `faster` converges faster than `slower` in (panel, K) of the curves (a DataFrame of
    ancre_case.csv's columns): per-seed final losses, seed-median final losses and iterations to 1e-2 / 1e-4 of the
    initial loss (None: not reached). None when either topology is missing."""
    g = curves[(curves.panel == panel) & (curves.K == K)]
    runs = {t: {s: c.sort_values("iteration") for s, c in g[g.topology == t].groupby("seed")} for t in (faster, slower)}
    seeds = sorted(set(runs[faster]) & set(runs[slower]))
    if not seeds:
        return None
    final = {t: np.array([float(runs[t][s].loss.iloc[-1]) for s in seeds]) for t in (faster, slower)}
    med = {t: g[g.topology == t].groupby("iteration").loss.median().sort_index() for t in (faster, slower)}
    wins = int((final[faster] < final[slower]).sum())
    ev = dict(panel=panel, K=K, faster=faster, slower=slower, seeds=len(seeds), seeds_faster=wins,
              final_faster=float(np.median(final[faster])), final_slower=float(np.median(final[slower])))
    for frac, tag in ((1e-2, "1e-2"), (1e-4, "1e-4")):
        for t, side in ((faster, "faster"), (slower, "slower")):
            ev[f"it_{tag}_{side}"] = _first_below(med[t].index.values, med[t].values, frac)
    ev["holds"] = wins > len(seeds) / 2
    return ev


def judge_case_claim(curves, claim):
    """{claim, source, statement, rule, verdict ('reproduced' | 'not reproduced' | 'not run'), pairs: [evidence]}
    for one id of CASE_CLAIMS, from the loss curves."""
    spec = CASE_CLAIMS[claim]
    pairs = [compare_speed(curves, a, b, spec["panel"], spec["K"]) for a, b in spec["pairs"]]
    verdict = ("not run" if any(p is None for p in pairs) else
               "reproduced" if all(p["holds"] for p in pairs) else "not reproduced")
    return dict(claim=claim, source=spec["source"], statement=spec["statement"], rule=CLAIM_RULE, verdict=verdict,
                pairs=[p for p in pairs if p is not None])


def case_claims(curves):
    """Every claim of CASE_CLAIMS judged; curves: a DataFrame of ancre_case.csv or its path."""
    if not hasattr(curves, "groupby"):
        import pandas as pd

        curves = pd.read_csv(curves)
    return [judge_case_claim(curves, c) for c in CASE_CLAIMS]


def claim_rows(judged):
    """Tidy rows (CLAIM_COLUMNS), one per (claim, pair): ancre_case_claims.csv."""
    for j in judged:
        for p in j["pairs"] or [{}]:
            yield [j[k] for k in ("claim", "source", "statement", "rule", "verdict")] + [p.get(k) for k in CLAIM_COLUMNS[5:]]


# ----------------------------------------------------------------------------- figure
STYLE = {  # topology: (colour, line style, width); sublinear-looking pairs dashed
    "none": ("black", "-", 2), "cascade": ("0.5", "--", 2), "0:1": ("tab:orange", "-", 2.6),
    "0:2": ("tab:green", "-", 2.6), "ancre": ("tab:red", ":", 2.6), "0:3": ("tab:purple", "-", 2.8),
    "1:2+2:3": ("tab:blue", "-", 2.6), "0:2+2:3": ("gold", "-", 2.6), "0:1+1:2": ("tab:orange", "--", 1.6), "2:3+3:4": ("tab:brown", "--", 1.6),
    "1:3+2:4": ("tab:pink", "--", 1.6), "0:2+2:4": ("tab:olive", "-", 1.6), "0:1+0:3": ("tab:cyan", "-", 1.6),
    "0:3+3:4": ("tab:gray", "-", 1.6), "0:3+1:4": ("tab:green", "-", 1.6), "0:4+3:4": ("black", "--", 1.6)}
K_COLOR = {2: "tab:blue", 3: "black", 4: "tab:red"}
TITLES = {"a": "(a) no shortcut, depth K = 2, 3, 4", "b": "(b) K = 3: residual topologies",
          "c": "(c) K = 4: pairs of shortcuts vs the single 0:3"}


def gmedian(L):
    return np.exp(np.median(np.log(np.maximum(L, 1e-300)), 0))  # median over seeds, on the log scale


def label(name, r):
    """Legend entry with the fitted tail: e^(-rate t) if linear, t^slope if sublinear (t = GF time)."""
    tail = {"linear": f"e^(−{r['rate_per_time']:.2f} t)", "sublinear": f"t^({r['loglog_slope']:.1f})"}
    n_lin = sum(int(s.split(": ")[1]) for s in r["shape_counts"].split("; ") if s.startswith("linear"))
    seeds = f" ({n_lin}/{r['n_seeds']} seeds linear)" if 0 < n_lin < r["n_seeds"] else ""
    return f"{name}: {tail.get(r['shape'], r['shape'])}{seeds}"


def plot(curves, logged, summary, path, c, seeds, note="", metadata=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its, rows = np.asarray(logged), {(r["panel"], r["K"], r["topology"]): r for r in summary}
    fig, axes = plt.subplots(2, 3, figsize=(17, 10), sharey=True)
    for col, panel in enumerate("abc"):
        for row, ax in enumerate(axes[:, col]):  # top: the paper's axes; bottom: log-log, where t^-2 is straight
            x = its if row == 0 else np.maximum(its, 0.5)
            for key, L in curves.items():
                if key[0] != panel:
                    continue
                _, K, topo = key
                if panel == "a":
                    ax.plot(x, gmedian(L), color=K_COLOR[K], lw=2, label=label(f"K = {K}", rows[key]))
                elif topo in STYLE:
                    colr, ls, lw = STYLE[topo]
                    ax.plot(x, gmedian(L), color=colr, ls=ls, lw=lw, zorder=3,
                            label=label("ANCRé" if topo == "ancre" else topo, rows[key]))
                else:  # the rest of the 45 pairs (pairs="all")
                    ax.plot(x, gmedian(L), color="0.85", lw=0.7, zorder=1)
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(TITLES[panel])
                ax.set_xlabel(f"GD iteration  (GF time t = iteration × {c.lr})")
                continue
            ax.set_xscale("log")
            ax.set_xlabel("GD iteration (log scale)")
            ref = its[len(its) // 3:]  # a 1/t^2 guide through the 0:1-like tails
            ax.plot(ref, 1e-2 * (ref / ref[0]) ** -2.0, color="0.6", lw=1, ls=(0, (1, 3)), label="guide ∝ t^(−2)")
            if panel == "c" and any(k[0] == "c" and k[2] not in STYLE for k in curves):
                ax.plot([], [], color="0.85", lw=0.7, label="the other pairs")
            ax.legend(fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1 if panel == "a" else 2,
                      frameon=False, title="fitted tail over the last half (t = GF time)", title_fontsize=8.5)
    for ax in axes[:, 0]:
        ax.set_ylabel("training loss ½‖f(X) − Y‖²  (median over seeds)")
    axes[0, 0].set_ylim(1e-26, 3 * max(float(L.max()) for L in curves.values()))
    fig.suptitle(f"ANCRé Fig. 2 (Case Study 3.1): deep linear nets, d = {c.d}, rank(A) = {c.rank}, "
                 f"{c.init_kind} init x {c.init}, full-batch GD lr {c.lr}, {len(seeds)} seeds{note}", fontsize=12)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.2, top=0.92, wspace=0.06, hspace=0.22)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata=metadata)
    plt.close(fig)


# ----------------------------------------------------------------------------- command
def main(args):
    sc = SCALES[args.scale]
    cli = dict(steps=args.steps, lr=args.lr, c_lr=args.c_lr, rank=args.rank, init=args.init, init_kind=args.init_kind)
    c = Case(**dict(sc["case"], **{k: v for k, v in cli.items() if v is not None}))
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else sc["seeds"]
    if not 0 < c.rank <= c.d:
        raise ValueError(f"rank: {c.rank} is not in 1..d = {c.d}")
    t0 = time.time()
    curves, logged, ancre = run(c, seeds, panels(args.pairs))
    wall = time.time() - t0
    summary = summarise(curves, logged, c)
    prov = io.provenance()
    meta = dict(experiment="ancre_case", scale=args.scale, seeds=seeds, pairs=args.pairs, case=asdict(c),
                wall_s=round(wall, 2), **prov)
    io.write_csv(args.out_csv, COLUMNS, tidy_rows(curves, logged, seeds, c))
    io.write_csv(args.out_summary, SUMMARY_COLUMNS, [[r[k] for k in SUMMARY_COLUMNS] for r in summary])
    judged = case_claims(args.out_csv)
    args.out_claims = args.out_claims or str(Path(args.out_csv).with_name(Path(args.out_csv).stem + "_claims.csv"))
    io.write_csv(args.out_claims, CLAIM_COLUMNS, claim_rows(judged))
    p_ij = {f"K={K} seed={s}": {f"{i}:{j}": round(float(P[i, j]), 4) for j in range(1, K + 1) for i in range(j)}
            for (K, s), P in ancre.items()}
    io.write_json(args.out_json or Path(args.out_csv).with_suffix(".json"),
                  {**meta, "outputs": [args.out_csv, args.out_summary, args.out_claims, args.out_fig], "columns": COLUMNS,
                   "summary_columns": SUMMARY_COLUMNS, "ancre_p_final": p_ij, "summary": summary, "claims": judged})
    plot(curves, logged, summary, args.out_fig, c, seeds, note=f"; {prov['git_commit'][:12]}, {prov['date'][:10]}",
         metadata={"Description": json.dumps({k: meta[k] for k in ("command", "git_commit", "date", "case", "seeds")})})
    for r in summary:
        if r["panel"] != "c" or r["topology"] in STYLE:
            print(f"({r['panel']}) K={r['K']} {r['topology']:>8}: final {r['final_loss']:.2e}  dlnL/dit "
                  f"{r['loglin_slope']:+.2e}  dlnL/dln(it) {r['loglog_slope']:+7.2f}  {r['shape_counts']}")
    for j in judged:
        print(f"claim {j['claim']}: {j['verdict']} ("
              + "; ".join(f"{p['faster']} < {p['slower']} in {p['seeds_faster']}/{p['seeds']} seeds, final "
                          f"{p['final_faster']:.2e} vs {p['final_slower']:.2e}" for p in j["pairs"]) + ")")
    print(f"ancre-case: {len(curves)} curves x {len(seeds)} seeds, {c.steps} steps in {wall:.1f} s -> {args.out_csv}")


def add_commands(sub):
    p = sub.add_parser("ancre-case", help="ANCRé Case Study 3.1 / Fig. 2: deep linear nets and residual topology",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-csv", default="results/tables/ancre_case.csv", help="tidy loss curves (%(default)s)")
    p.add_argument("--out-summary", default="results/tables/ancre_case_summary.csv", help="convergence fits")
    p.add_argument("--out-json", help="config, provenance, summary, learned ANCRé p_ij (default <out-csv>.json)")
    p.add_argument("--out-fig", default="figures/ancre_fig2.png", help="Figure 2, panels a-c (%(default)s)")
    p.add_argument("--out-claims", help="the case-study claims judged from the curves (CASE_CLAIMS; default "
                                        "<out-csv>_claims.csv)")
    p.add_argument("--scale", default="paper", choices=sorted(SCALES), help="paper (default) or quick")
    p.add_argument("--seeds", help="comma-separated seeds (default: the scale's)")
    p.add_argument("--pairs", default="shown", choices=["shown", "all"],
                   help="K = 4 pairs for panel (c): the 9 shown (default) or all 45 (about 3x the time)")
    p.add_argument("--steps", type=int, help=f"GD iterations (default {Case.steps}; quick {SCALES['quick']['case']['steps']})")
    p.add_argument("--lr", type=float, help=f"GD step (default {Case.lr})")
    p.add_argument("--c-lr", type=float, help=f"ANCRé logit step as a multiple of lr (default {Case.c_lr})")
    p.add_argument("--rank", type=int, help=f"rank of the target map, <= d = {Case.d} (default {Case.rank})")
    p.add_argument("--init", type=float, help=f"initialisation scale (default {Case.init})")
    p.add_argument("--init-kind", choices=["orthogonal", "gaussian"], help=f"default {Case.init_kind}")
    p.set_defaults(func=main)
