"""Image datasets for the vision track: Fashion-MNIST, CIFAR-10/100 (small: held as uint8 tensors on the device,
augmented in batches with tensor ops) and ImageNet-1k (an ImageFolder streamed by a DataLoader).

Where each is found (cfg.data_dir = D):
  fashion_mnist  D/FashionMNIST/raw/*-ubyte (torchvision's layout), else the .gz files there or in Debian's
                 /usr/share/datasets/fashion-mnist (`apt-get install -y dataset-fashion-mnist`), decompressed
                 into D/FashionMNIST/raw; else torchvision's download. Read by torchvision's IDX reader.
                 28 x 28 images are zero-padded (background) to 32 x 32, so one model fits all small datasets.
  cifar10/100    D/cifar-10-batches-py, D/cifar-100-python (the python pickles); else torchvision's download
                 into D. Offline and missing: one error line saying what to download and where.
  imagenet       cfg.imagenet_dir/train and /val as ImageFolders (val sorted into one folder per class).

Augmentation (training batches only): random crop with 4 px zero padding and horizontal flip for the small
datasets (the standard CIFAR recipe, He et al. 2016; used for Fashion-MNIST too), in one gather per batch;
RandomResizedCrop(224) + flip for ImageNet, evaluation on Resize(256) + CenterCrop(224). All randomness (batch
order, crops, flips) comes from the run's generator, so a resumed job sees the same batches.

Validation (cfg.val_frac > 0): a fixed fraction of the training images (after train_subset: the subset first, then
the hold-out from it) becomes the validation split, never trained on; drawn from its own generator (VAL_SEED), so
every seed and paradigm sees the same split. Evaluated un-augmented, as the test set.
"""
import copy
import gzip
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Spec:
    classes: int
    channels: int
    size: int    # model input side, px
    mean: tuple
    std: tuple
    n_train: int = 0  # images in the full training / test split (lpa_core.cost; 0: unknown)
    n_test: int = 0


DATASETS = {
    "fashion_mnist": Spec(10, 1, 32, (0.2860,), (0.3530,), 60_000, 10_000),
    "cifar10": Spec(10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 50_000, 10_000),
    "cifar100": Spec(100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 50_000, 10_000),
    "imagenet": Spec(1000, 3, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1_281_167, 50_000),
}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CIFAR = {  # folder, archive URL, train files, test files, label key (as torchvision.datasets.CIFAR10/100)
    "cifar10": ("cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
    "cifar100": ("cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", ["train"], ["test"], "fine_labels"),
}
SUBSET_SEED = 12_345  # fixed subsets (train_subset, test_subset, the train-eval and embedding images): same for every run
VAL_SEED = 54_321  # the validation hold-out (cfg.val_frac): its own generator, the same for every run seed and paradigm


def fixed_subset(n, k, seed=SUBSET_SEED):
    """The first k indices of a fixed permutation of range(n) (all of them, in order, if k is 0 or >= n)."""
    if not k or k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].sort().values


def n_held(n, frac):
    """Images held out of n for validation at val_frac `frac`: round(frac x n), at least one when frac > 0."""
    return max(1, round(frac * n)) if frac else 0


def hold_out(idx, frac, seed=VAL_SEED):
    """(training, validation) indices of idx: a fixed fraction `frac` (at least one image when frac > 0) held out,
    drawn from its own generator, each part in idx's order; frac 0: (idx, empty)."""
    n_val = n_held(len(idx), frac)
    perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))
    return idx[perm[n_val:].sort().values], idx[perm[:n_val].sort().values]


def _download(kind, root):
    """torchvision's downloader for `kind` into root (md5-checked); tests replace this to stay offline."""
    from lpa_core._torchvision import import_torchvision

    ds = import_torchvision().datasets
    cls = {"fashion_mnist": ds.FashionMNIST, "cifar10": ds.CIFAR10, "cifar100": ds.CIFAR100}[kind]
    cls(str(root), train=True, download=True)


# --- Fashion-MNIST ------------------------------------------------------------------------------------------------

def load_fashion_mnist(data_dir, search=(DEBIAN_FASHION_MNIST,)):
    """{'train': (uint8 [N, 28, 28], int64 [N]), 'test': ...} read by torchvision's IDX reader from
    data_dir/FashionMNIST/raw, filled from .gz files there or in `search` when needed, else downloaded."""
    raw = Path(data_dir) / "FashionMNIST" / "raw"
    names = [n for pair in IDX.values() for n in pair]
    for name in names:
        if (raw / name).is_file():
            continue
        gz = next((d / f"{name}.gz" for d in (raw, *map(Path, search)) if (d / f"{name}.gz").is_file()), None)
        if gz is not None:
            raw.mkdir(parents=True, exist_ok=True)
            tmp = raw / f".{name}.tmp{os.getpid()}"
            with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, raw / name)
    if not all((raw / n).is_file() for n in names):
        try:
            _download("fashion_mnist", data_dir)
        except Exception as e:  # noqa: BLE001 (any failure: one line below)
            raise FileNotFoundError(
                f"datasets: fashion_mnist not found in {raw} nor in {', '.join(map(str, search))}, and the download "
                f"failed ({type(e).__name__}): apt-get install -y dataset-fashion-mnist, or put {', '.join(n + '.gz' for n in names)} "
                f"(from https://github.com/zalandoresearch/fashion-mnist) into {raw}/") from None
    from lpa_core._torchvision import import_torchvision

    mnist = import_torchvision().datasets.mnist
    return {split: (mnist.read_image_file(str(raw / im)), mnist.read_label_file(str(raw / lb)).long())
            for split, (im, lb) in IDX.items()}


# --- CIFAR --------------------------------------------------------------------------------------------------------

def load_cifar(name, data_dir):
    """{'train': (uint8 [N, 3, 32, 32], int64 [N]), 'test': ...} from the python pickles in data_dir/<folder>
    (read as torchvision.datasets.CIFAR10 does, without its md5 check of every file), downloaded if missing."""
    folder, url, train, test, label_key = CIFAR[name]
    path = Path(data_dir) / folder
    if not all((path / f).is_file() for f in train + test):
        try:
            _download(name, data_dir)
        except Exception as e:  # noqa: BLE001
            raise FileNotFoundError(
                f"datasets: {name} not found in {path} and the download failed ({type(e).__name__}, no network?): "
                f"download {url} and extract it into {Path(data_dir)}/ (it unpacks to {folder}/)") from None

    def read(files):
        xs, ys = [], []
        for f in files:
            with open(path / f, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.extend(entry[label_key])
        return torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.long)
    return {"train": read(train), "test": read(test)}


# --- small datasets on the device ---------------------------------------------------------------------------------

def crop_flip(x, pad, gen):
    """Random crop (zero padding `pad`) and horizontal flip of a batch x [B, C, H, W], one gather: the flip reverses
    the column index. Offsets and flips are drawn from the CPU generator `gen`."""
    B, C, H, W = x.shape
    dev = x.device
    off = torch.randint(0, 2 * pad + 1, (2, B), generator=gen).to(dev)
    flip = (torch.rand(B, generator=gen) < 0.5).to(dev)
    rows = off[0][:, None] + torch.arange(H, device=dev)
    cols = off[1][:, None] + torch.arange(W, device=dev)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    xp = F.pad(x, (pad, pad, pad, pad))
    return xp[torch.arange(B, device=dev)[:, None, None, None], torch.arange(C, device=dev)[None, :, None, None],
              rows[:, None, :, None], cols[:, None, None, :]]


class TensorImages:
    """A small dataset as uint8 tensors on the device; batches come out normalised float32."""

    def __init__(self, name, spec, split, device, train_subset=0, test_subset=0, val_frac=0.0, pad=4):
        (xtr, ytr), (xte, yte) = split["train"], split["test"]
        if xtr.dim() == 3:  # grey images: add the channel axis
            xtr, xte = xtr[:, None], xte[:, None]
        edge = spec.size - xtr.shape[-1]
        if edge:  # Fashion-MNIST 28 -> 32: zero (background) border
            xtr, xte = (F.pad(t, (edge // 2, edge - edge // 2) * 2) for t in (xtr, xte))
        (tr, va), te = hold_out(fixed_subset(len(xtr), train_subset), val_frac), fixed_subset(len(xte), test_subset)
        self.name, self.spec, self.device, self.pad = name, spec, torch.device(device), pad
        self.x_train, self.y_train = xtr[tr].contiguous().to(device), ytr[tr].to(device)
        self.x_val, self.y_val = xtr[va].contiguous().to(device), ytr[va].to(device)
        self.x_test, self.y_test = xte[te].contiguous().to(device), yte[te].to(device)
        self.n_train, self.n_val, self.n_test = len(self.x_train), len(self.x_val), len(self.x_test)
        self.mean = torch.tensor(spec.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(spec.std, device=device).view(1, -1, 1, 1)

    def normalise(self, x):
        return (x.float() / 255 - self.mean) / self.std

    def train_batches(self, batch_size, gen):
        """One shuffled pass, augmented; the last partial batch is dropped (every step sees batch_size images)."""
        order = torch.randperm(self.n_train, generator=gen).to(self.device)
        for k in range(0, self.n_train - batch_size + 1, batch_size):
            idx = order[k:k + batch_size]
            yield self.normalise(crop_flip(self.x_train[idx], self.pad, gen)), self.y_train[idx]

    def eval_batches(self, split, batch_size, subset=0):
        """Un-augmented batches of 'train', 'val' or 'test' in order (the first `subset` of a fixed permutation if set)."""
        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        idx = fixed_subset(len(x), subset).to(self.device)
        for k in range(0, len(idx), batch_size):
            i = idx[k:k + batch_size]
            yield self.normalise(x[i]), y[i]

    def sample(self, n):
        """(x, y, index) of n fixed test images (embeddings; timing)."""
        idx = fixed_subset(self.n_test, n)[:n].to(self.device)
        return self.normalise(self.x_test[idx]), self.y_test[idx], idx.cpu()


# --- ImageNet -----------------------------------------------------------------------------------------------------

class FolderImages:
    """ImageNet-1k from an ImageFolder root (train/, val/), streamed by DataLoaders with `workers` processes."""

    def __init__(self, root, spec, device, workers=4, train_subset=0, test_subset=0, val_frac=0.0):
        from lpa_core._torchvision import import_torchvision

        tv = import_torchvision()
        T, ds = tv.transforms, tv.datasets
        root = Path(root)
        for part in ("train", "val"):
            if not (root / part).is_dir():
                raise FileNotFoundError(f"imagenet_dir: no {root / part}/ (an ImageFolder: one folder per class)")
        norm = T.Normalize(spec.mean, spec.std)
        self.train_set = ds.ImageFolder(str(root / "train"), T.Compose([
            T.RandomResizedCrop(spec.size), T.RandomHorizontalFlip(), T.ToTensor(), norm]))
        evaluate = T.Compose([T.Resize(round(spec.size * 256 / 224)), T.CenterCrop(spec.size), T.ToTensor(), norm])
        self.train_eval_set = copy.copy(self.train_set)  # the same file list (one scan of train/), eval transform
        self.train_eval_set.transform = evaluate
        self.test_set = ds.ImageFolder(str(root / "val"), evaluate)
        self.train_idx, self.val_idx = hold_out(fixed_subset(len(self.train_set), train_subset), val_frac)
        self.test_idx = fixed_subset(len(self.test_set), test_subset)
        self.spec, self.device, self.workers = spec, torch.device(device), workers
        self.n_train, self.n_val, self.n_test = len(self.train_idx), len(self.val_idx), len(self.test_idx)
        self.name = "imagenet"

    def _loader(self, dataset, idx, batch_size, **kw):
        from torch.utils.data import DataLoader, Subset

        return DataLoader(Subset(dataset, idx.tolist()), batch_size=batch_size, num_workers=self.workers,
                          pin_memory=self.device.type == "cuda", persistent_workers=False, **kw)

    def _to(self, batches):
        for x, y in batches:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def train_batches(self, batch_size, gen):
        """One shuffled pass; order and the workers' augmentation seeds are drawn from `gen`."""
        return self._to(self._loader(self.train_set, self.train_idx, batch_size, shuffle=True, drop_last=True, generator=gen))

    def eval_batches(self, split, batch_size, subset=0):
        dataset, idx = (self.test_set, self.test_idx) if split == "test" else (self.train_eval_set, getattr(self, f"{split}_idx"))
        return self._to(self._loader(dataset, idx[fixed_subset(len(idx), subset)], batch_size))

    def sample(self, n):
        idx = fixed_subset(self.n_test, n)[:n]
        xs, ys = zip(*(self.test_set[int(self.test_idx[i])] for i in idx))
        return torch.stack(xs).to(self.device), torch.tensor(ys, device=self.device), idx


# --- a folder of your own ------------------------------------------------------------------------------------------
FOLDER = "imagefolder:"  # imagefolder:PATH[:size=N]: class subfolders, optionally under train/ and test/
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def parse_folder(name):
    """(root, size) of imagefolder:PATH[:size=N], checked: one-line errors naming what is wrong."""
    path, *opts = name[len(FOLDER):].split(":")
    size = 32
    for o in opts:
        k, _, v = o.partition("=")
        if k != "size" or not v.isdigit() or int(v) < 8:
            raise ValueError(f"datasets: bad option '{o}' in '{name}' (valid: size=N, N >= 8 pixels; default 32)")
        size = int(v)
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"datasets: no such folder '{path}' (in '{name}')")
    top = root / "train" if (root / "train").is_dir() and (root / "test").is_dir() else root
    classes = sorted(d.name for d in top.iterdir() if d.is_dir())
    if len(classes) < 2:
        raise ValueError(f"datasets: '{top}' needs at least 2 class subfolders (found: {', '.join(classes) or 'none'})")
    return root, size


def load_folder(name):
    """(Spec, split) of an image folder, as uint8 tensors (the same on-device pipeline as Fashion-MNIST and CIFAR):
    RGB, resized to size x size; the test split is test/ when train/ and test/ exist, else a fixed 20 % holdout
    (SUBSET_SEED, the same for every run seed); mean and std from the training images."""
    from PIL import Image

    root, size = parse_folder(name)
    split = root / "train" if (root / "train").is_dir() and (root / "test").is_dir() else None
    classes = sorted(d.name for d in (split or root).iterdir() if d.is_dir())

    def read(folder):
        files = [(f, k) for k, c in enumerate(classes) for f in sorted((folder / c).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise ValueError(f"datasets: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders of '{folder}'")
        x = [torch.from_numpy(np.asarray(Image.open(f).convert("RGB").resize((size, size)))).permute(2, 0, 1) for f, _ in files]
        return torch.stack(x), torch.tensor([k for _, k in files])

    if split:
        train, test = read(root / "train"), read(root / "test")
    else:
        x, y = read(root)
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(SUBSET_SEED))
        te, tr = perm[:max(1, len(x) // 5)], perm[max(1, len(x) // 5):]
        train, test = (x[tr], y[tr]), (x[te], y[te])
    xf = train[0].float() / 255
    spec = Spec(len(classes), 3, size, tuple(xf.mean((0, 2, 3)).tolist()), tuple(xf.std((0, 2, 3)).clamp_min(1e-3).tolist()),
                len(train[0]), len(test[0]))
    return spec, {"train": train, "test": test}


def load_images(name, cfg):
    """The dataset `name` for cfg (data_dir, imagenet_dir, device, subsets, workers)."""
    if name.startswith(FOLDER):
        spec, split = load_folder(name)
        return TensorImages(name, spec, split, cfg.device, cfg.train_subset, cfg.test_subset, cfg.val_frac)
    spec = DATASETS[name]
    if name == "imagenet":
        return FolderImages(cfg.imagenet_dir, spec, cfg.device, cfg.workers, cfg.train_subset, cfg.test_subset, cfg.val_frac)
    split = load_fashion_mnist(cfg.data_dir) if name == "fashion_mnist" else load_cifar(name, cfg.data_dir)
    return TensorImages(name, spec, split, cfg.device, cfg.train_subset, cfg.test_subset, cfg.val_frac)
