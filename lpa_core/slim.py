"""Bring committed run folders down to what the writers now keep (the repository must travel: issue 14, under 35 MiB).

The writers keep less than they used to:
  grid.npz        the surface figures draw one seed per dataset, so the surface task keeps the first
                  TrainConfig.grid_seeds seeds of each dataset (ok runs first; lpa_core.surfaces.grid_runs)
  embeddings.npz  the t-SNE figure embeds TrainConfig.n_embed fixed test images; the cpu scale now asks for 150
                  (config/config.yaml scales.cpu), and lpa_core.images.fixed_subset makes the n-image set a subset
                  of any larger one, so a smaller file is an exact selection of a larger one's rows

`slim_grid` and `slim_embeddings` make exactly the file the current writer would have written from the same
trained model (a selection of stored rows, nothing recomputed or interpolated); a file already at or below the
target is left alone. The numbers in tables never come from these files (they read the CSVs).

    python -m lpa_core.slim --grid-seeds 1 results/runs/*/table1/resmlp/* results/runs/*/ancre/resmlp/*/*
    python -m lpa_core.slim --n-embed 150 results/runs/cpu/table2/*/*/*/seed*

(the commands that migrated the committed runs). run.json is not touched: its manifest and config then need
recomputing (lpa_core.runs).

    python -m lpa_core.slim --drop grid.npz results/runs/*/ancre/resmlp/*/*

drops a file no rule, table or figure reads (the ANCRé surface runs' prediction grids: the surface figures draw
Table 1's) from committed folders; run.json's manifest is made again and records `dropped` (lpa_core.runs.refinish).
A run trained anew writes it again.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lpa_core import io, runs
from lpa_core.images import fixed_subset
from lpa_core.surfaces import grid_runs


def slim_grid(path, n):
    """Keep the first n seeds of each dataset in grid.npz (ok runs first). Returns (runs before, runs after)."""
    z = dict(np.load(path))
    runs = list(zip(z["datasets"].tolist(), z["seeds"].tolist()))
    keep = grid_runs(runs, z["status"].tolist(), n)
    if len(keep) < len(runs):
        per_run = ("pred", "truth", "datasets", "seeds", "status")
        io.write_npz(path, **{k: v[keep] if k in per_run else v for k, v in z.items()})
    return len(runs), len(keep)


def slim_embeddings(path, n, n_test):
    """Keep the rows of embeddings.npz a writer with n_embed = n would write: lpa_core.images' fixed n of the
    n_test test images (a subset of the stored ones). Returns (images before, images after)."""
    z = dict(np.load(path))
    have = z["index"]
    if len(have) <= n:
        return len(have), len(have)
    want = fixed_subset(n_test, n)[:n].numpy()
    rows = np.searchsorted(have, want)
    if not (rows < len(have)).all() or not (have[np.minimum(rows, len(have) - 1)] == want).all():
        raise ValueError(f"{path}: its images are not the fixed subset of {n_test} test images (cannot select {n} of them)")
    io.write_npz(path, **{**z, "emb": z["emb"][:, rows], "labels": z["labels"][rows], "index": have[rows]})
    return len(have), n


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m lpa_core.slim", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders (holding run.json and grid.npz or embeddings.npz)")
    p.add_argument("--grid-seeds", type=int, help="grid.npz: keep the first this-many seeds per dataset")
    p.add_argument("--n-embed", type=int, help="embeddings.npz: keep this many fixed test images")
    p.add_argument("--drop", action="append", default=[], help="a file no reader needs: removed, the manifest made again")
    a = p.parse_args(argv)
    for d in map(Path, a.runs):
        gone = [n for n in a.drop if (d / n).is_file()]
        if gone:
            info = runs.verify_run(d)
            for n in gone:
                (d / n).unlink()
            runs.refinish(d, dropped=sorted(set(info.get("dropped", [])) | set(gone)))
            print(d, "dropped", ", ".join(gone))
        if a.grid_seeds and (d / "grid.npz").is_file():
            print(d / "grid.npz", "runs %d -> %d" % slim_grid(d / "grid.npz", a.grid_seeds))
        if a.n_embed and (d / "embeddings.npz").is_file():
            test_subset = json.loads((d / "run.json").read_text())["config"].get("test_subset", 0)
            if not test_subset:
                print(f"error: {d}/run.json: test_subset is 0 (the whole test set); its size is needed", file=sys.stderr)
                return 2
            print(d / "embeddings.npz", "images %d -> %d" % slim_embeddings(d / "embeddings.npz", a.n_embed, test_subset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
