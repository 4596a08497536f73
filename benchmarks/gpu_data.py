"""A Fashion-MNIST subset small enough to travel with the checkout to a lent GPU machine (benchmarks/gpu_acceptance.sh).

    python benchmarks/gpu_data.py                        # -> benchmarks/gpu_data/FashionMNIST/raw/*.gz (~11 MB)
    python benchmarks/gpu_data.py --train 20000 --test 5000 --out benchmarks/gpu_data

Reads the real Fashion-MNIST (Debian's /usr/share/datasets/fashion-mnist, or <data-dir>/FashionMNIST/raw) and
writes a fixed subset (lpa_core.images.fixed_subset: the same images every time) as the four IDX files, gzipped
without timestamps, where lpa_core.images.load_fashion_mnist looks for them: `--data_dir benchmarks/gpu_data`
then trains on the subset as if it were the whole dataset. The folder is git-ignored: bring it along explicitly
(the device run's `carry`), it is ~11 MB beside a tree kept under 35 MiB (tests/test_size.py).
"""
import argparse
import gzip
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lpa_core.images import IDX, fixed_subset, load_fashion_mnist  # noqa: E402


def write_idx(path, array):
    """An IDX file (uint8 images [N, 28, 28]: magic 2051; labels [N]: magic 2049), gzipped with mtime 0."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    head = struct.pack(">I", 2051 if a.ndim == 3 else 2049) + b"".join(struct.pack(">I", n) for n in a.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(head + a.tobytes())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=20_000, help="training images kept")
    p.add_argument("--test", type=int, default=5_000, help="test images kept")
    p.add_argument("--data-dir", default="data", help="where the full dataset is found (besides Debian's copy)")
    p.add_argument("--out", default="benchmarks/gpu_data")
    a = p.parse_args(argv)
    full = load_fashion_mnist(a.data_dir)
    raw = Path(a.out) / "FashionMNIST" / "raw"
    for split, n in (("train", a.train), ("test", a.test)):
        x, y = full[split]
        idx = fixed_subset(len(y), n)
        for name, arr in zip(IDX[split], (x[idx].numpy(), y[idx].numpy())):
            write_idx(raw / f"{name}.gz", arr)
        print(f"{split}: {len(idx)} of {len(y)} images -> {raw}")
    print(f"{sum(f.stat().st_size for f in raw.glob('*.gz')) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
