"""python -m lpa_core fetch-data --datasets cifar10,fashion_mnist --data-dir data: make image datasets readable
from --data-dir (download / unpack) under an exclusive lock, so parallel jobs never write one folder at once."""
import fcntl
from pathlib import Path

from lpa_core.registry import IMAGE_DATASETS

DATA_FILES = {
    "fashion_mnist": [f"FashionMNIST/raw/{n}" for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")],
    "cifar10": [f"cifar-10-batches-py/{n}" for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]],
    "cifar100": ["cifar-100-python/train", "cifar-100-python/test"],
}


def fetch(dataset, data_dir, imagenet_dir=""):
    """Make `dataset` readable from data_dir under a lock on data_dir/.fetch.lock; a no-op when its files are there."""
    if dataset == "imagenet":
        for part in ("train", "val"):
            if not (Path(imagenet_dir) / part).is_dir():
                raise FileNotFoundError(f"imagenet_dir: no {Path(imagenet_dir) / part}/ (an ImageFolder: one folder per class)")
        return "present"
    if dataset not in DATA_FILES:
        raise ValueError(f"datasets: unknown '{dataset}' (valid: {', '.join([*DATA_FILES, 'imagenet'])})")
    there = lambda: all((Path(data_dir) / f).is_file() for f in DATA_FILES[dataset])
    if there():
        return "present"
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(data_dir) / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (also if this process dies)
        if there():  # another job fetched it while this one waited
            return "present"
        from lpa_core import images

        if dataset == "fashion_mnist":
            images.load_fashion_mnist(data_dir)
        else:
            images.load_cifar(dataset, data_dir)
    return "fetched"


def add_commands(sub):
    d = sub.add_parser("fetch-data", help="download / unpack image datasets into --data-dir (locked: one at a time)")
    d.add_argument("--datasets", required=True, help="comma-separated: " + ", ".join(IMAGE_DATASETS))
    d.add_argument("--data-dir", default="data")
    d.add_argument("--imagenet-dir", default="")
    d.set_defaults(func=lambda a: [print(f"{ds}: {fetch(ds, a.data_dir, a.imagenet_dir)} in {a.data_dir}")
                                   for ds in a.datasets.split(",")])
