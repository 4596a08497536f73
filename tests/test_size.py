"""The repository must travel: a run on a lent GPU machine receives the checkout's tracked files, at most 64 MiB
with the data it brings (issue 14). The tracked tree stays under LIMIT_MIB; cached results keep to what the
writers now write (lpa_core.slim)."""
import os
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lpa_core.surfaces import grid_runs

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MIB = 35


def tracked_sizes(root=ROOT):
    """{path: bytes} of every tracked file present in the working tree."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    paths = [p for p in out.decode().split("\0") if p]
    return {p: os.lstat(root / p).st_size for p in paths if os.path.lexists(root / p)}


def test_tracked_tree_under_limit():
    sizes = tracked_sizes()
    total = sum(sizes.values())
    by_dir = Counter()
    for p, n in sizes.items():
        by_dir["/".join(p.split("/")[:3])] += n
    top = ", ".join(f"{d} {n / 2**20:.1f}" for d, n in by_dir.most_common(5))
    assert total < LIMIT_MIB * 2**20, f"tracked tree {total / 2**20:.1f} MiB > {LIMIT_MIB} MiB (largest, MiB: {top})"


def test_cached_grids_keep_one_seed_per_dataset():
    """Every committed grid.npz holds what the surface writer now keeps at the default grid_seeds (1)."""
    grids = [p for p in tracked_sizes() if p.endswith("/grid.npz")]
    assert grids
    for p in grids:
        z = np.load(ROOT / p)
        assert len(set(z["datasets"].tolist())) == len(z["datasets"]), p


def test_grid_runs_prefers_ok_runs_and_keeps_order():
    runs = [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("b", 2)]
    status = ["diverged", "ok", "ok", "ok", "ok"]
    assert grid_runs(runs, status, 1) == [1, 2]
    assert grid_runs(runs, status, 2) == [0, 1, 2, 3]
    assert grid_runs(runs, status, 0) == [0, 1, 2, 3, 4]


def test_slim_selects_exactly_what_the_writers_keep(tmp_path):
    from lpa_core.images import fixed_subset
    from lpa_core.slim import slim_embeddings, slim_grid

    idx = fixed_subset(1000, 300).numpy()
    emb = np.arange(2 * 300 * 3, dtype=np.float16).reshape(2, 300, 3)
    np.savez_compressed(tmp_path / "embeddings.npz", emb=emb, labels=idx % 10, index=idx, depth=np.arange(1, 3))
    assert slim_embeddings(tmp_path / "embeddings.npz", 150, 1000) == (300, 150)
    z = np.load(tmp_path / "embeddings.npz")
    want = fixed_subset(1000, 150).numpy()
    rows = np.searchsorted(idx, want)
    assert (z["index"] == want).all() and (z["emb"] == emb[:, rows]).all() and (z["labels"] == want % 10).all()
    with pytest.raises(ValueError, match="fixed subset"):
        slim_embeddings(tmp_path / "embeddings.npz", 100, 999)  # another test-set size: not a subset

    pred = np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float16)
    np.savez_compressed(tmp_path / "grid.npz", axis=np.arange(3.0), pred=pred, truth=pred[:, 0].astype(np.float32),
                        datasets=np.array(["a", "a", "b", "b"]), seeds=np.array([0, 1, 0, 1]),
                        status=np.array(["diverged", "ok", "ok", "ok"]))
    assert slim_grid(tmp_path / "grid.npz", 1) == (4, 2)
    z = np.load(tmp_path / "grid.npz")
    assert (z["pred"] == pred[[1, 2]]).all() and list(z["seeds"]) == [1, 0] and list(z["status"]) == ["ok", "ok"]
