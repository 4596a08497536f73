"""Tabular datasets by name, offline, for the residual MLP (the surface task, lpa_core.surfaces):

    csv:PATH[:target=COL[+COL]][:features=COL+COL...]      a CSV file (a header row)
    parquet:PATH[:target=...][:features=...]                  a Parquet file
    sklearn:NAME[:target=...][:features=...]                  scikit-learn's bundled loaders (no download):
                                                              breast_cancer, diabetes, digits, iris, linnerud, wine

The target defaults to the last column (sklearn: the loader's target, several for linnerud); the features to the
other numeric columns. The task follows the target: a float target is regression (MSE, MAE), integer or string
labels are classification (cross-entropy, accuracy). Our choices where the issue is silent: a seeded holdout of
20 % is the test split and 10 % of the rest the validation split (the run's seed draws both); features are
standardised with the training split's mean and std, and so is a regression target (MSE 1.0 = predicting the mean:
errors are in units of the target's training std). An integer target with more than MAX_CLASSES values is taken
as regression. Torch-free: the workflow checks a name (`check`) before any job starts.
"""
from pathlib import Path

import numpy as np

PREFIXES = ("csv", "parquet", "sklearn")
BUNDLED = ("breast_cancer", "diabetes", "digits", "iris", "linnerud", "wine")  # sklearn.datasets.load_<name>, offline
MAX_CLASSES = 50
TEST_FRAC, VAL_FRAC = 0.2, 0.1


def is_tabular(name):
    return ":" in name


def parse(name):
    """(prefix, source, target columns or None, feature columns or None) of a tabular dataset name."""
    prefix, _, rest = name.partition(":")
    if prefix not in PREFIXES:
        raise ValueError(f"datasets: unknown source '{prefix}:' in '{name}' (valid: {', '.join(p + ':' for p in PREFIXES)}, "
                         f"or a registered surface)")
    source, *opts = rest.split(":")
    got = {}
    for o in opts:
        k, eq, v = o.partition("=")
        if k not in ("target", "features") or not eq or not v:
            raise ValueError(f"datasets: bad option '{o}' in '{name}' (valid: target=COL[+COL], features=COL+COL...)")
        got[k] = v.split("+")
    if not source:
        raise ValueError(f"datasets: '{name}' names no file or loader")
    return prefix, source, got.get("target"), got.get("features")


def frame(name):
    """(pandas DataFrame, default target columns) of a tabular dataset; one-line errors naming what is wrong."""
    import pandas as pd

    prefix, source, _, _ = parse(name)
    if prefix == "sklearn":
        if source not in BUNDLED:
            raise ValueError(f"datasets: sklearn:{source} is not a bundled scikit-learn dataset (it would download, or "
                             f"does not exist); valid offline: {', '.join('sklearn:' + b for b in BUNDLED)}")
        from sklearn import datasets

        d = getattr(datasets, f"load_{source}")(as_frame=True)
        return d.frame, list(d.target_names) if source == "linnerud" else [d.target.name]
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"datasets: no such file '{source}' (in '{name}')")
    try:
        df = pd.read_csv(path) if prefix == "csv" else pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001  a file that is not readable as its kind: one line
        raise ValueError(f"datasets: cannot read '{source}' as {prefix}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if df.empty or not len(df.columns):
        raise ValueError(f"datasets: '{source}' holds no rows")
    return df, [df.columns[-1]]


def columns(name):
    """(DataFrame, target columns, feature columns) after the options, checked: the one check of a name."""
    df, default = frame(name)
    _, source, target, features = parse(name)
    target = target or default
    cols = [str(c) for c in df.columns]
    for c in target + (features or []):
        if c not in cols:
            raise ValueError(f"datasets: no column '{c}' in '{source}' (valid: {', '.join(cols)})")
    df.columns = cols
    numeric = [c for c in cols if c not in target and is_num(df[c])]
    features = features or numeric
    bad = [c for c in features if not is_num(df[c])]
    if bad or not features:
        raise ValueError(f"datasets: '{source}' has no numeric feature columns besides the target {target} (columns: {', '.join(cols)})" if not features
                         else f"datasets: feature column(s) {bad} of '{source}' are not numeric (numeric: {', '.join(numeric)})")
    if len(target) > 1 and kind(df[target]) != "regression":
        raise ValueError(f"datasets: several target columns {target} need to be numeric (regression)")
    if len(df) < 10:
        raise ValueError(f"datasets: '{source}' has {len(df)} rows; need at least 10 (train, validation and test splits)")
    return df, target, features


def check(name):
    columns(name)


def is_num(col):
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return is_numeric_dtype(col) and not is_bool_dtype(col)


def kind(y):
    """'regression' (float target, or integers with many values) or 'classification' (integer or string labels)."""
    from pandas.api.types import is_float_dtype, is_integer_dtype

    if y.shape[1] > 1:
        return "regression" if all(is_num(y[c]) for c in y.columns) else "classification"
    col = y.iloc[:, 0]
    if is_float_dtype(col):
        return "regression"
    if is_integer_dtype(col):
        return "classification" if col.nunique() <= MAX_CLASSES else "regression"
    return "classification"


def load(name, seed):
    """dict(x_train, y_train, x_val, y_val, x_test, y_test: float32 numpy [N, d] / y [N, d_out] float32 or [N] int64;
    kind, classes (labels, classification), d_in, d_out) with seeded holdouts and train-split standardisation."""
    df, target, features = columns(name)
    df = df.dropna(subset=target + features)
    x, y = df[features].to_numpy(np.float64), df[target]
    k = kind(y)
    out = {"kind": k, "classes": None}
    if k == "classification":
        col = y.iloc[:, 0]
        classes, y = np.unique(col.to_numpy() if is_num(col) else col.astype(str).to_numpy(), return_inverse=True)
        out["classes"], y = [str(c) for c in classes], y.astype(np.int64)
    else:
        y = y.to_numpy(np.float64)
    n = len(x)
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(TEST_FRAC * n))
    n_val = max(1, round(VAL_FRAC * (n - n_test)))
    te, va, tr = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
    mu, sd = x[tr].mean(0), x[tr].std(0)
    sd[sd == 0] = 1
    x = (x - mu) / sd
    if k == "regression":
        ym, ys = y[tr].mean(0), y[tr].std(0)
        ys[ys == 0] = 1
        y = ((y - ym) / ys).astype(np.float32)
    x = x.astype(np.float32)
    for split, idx in (("train", tr), ("val", va), ("test", te)):
        out[f"x_{split}"], out[f"y_{split}"] = x[idx], y[idx]
    out["d_in"], out["d_out"] = x.shape[1], len(out["classes"]) if k == "classification" else y.shape[1]
    return out
