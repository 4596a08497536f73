"""The vision track's core: every registered model keeps the residual-stack contract, inactive blocks get no update
from torch.optim (bit for bit), the dataset readers read what they should (IDX gz/raw, CIFAR pickles) and say in one
line what to download when offline, and each model family trains under each paradigm through the one loop. Tiny
models and data the tests write; CPU only (the CUDA test is skipped without a GPU)."""
import gzip
import json
import os
import pickle
import struct
import urllib.error

import numpy as np
import pandas as pd
import pytest
import torch

from lpa_core import images, vision
from lpa_core import train as train_mod
from lpa_core.cli import main
from lpa_core.config import TrainConfig
from lpa_core.images import Spec, TensorImages, crop_flip, load_cifar, load_fashion_mnist
from lpa_core.paradigms import PARADIGMS, simultaneous
from lpa_core.train import same_config, train
from lpa_core.vision import VisionTask, depth_costs
from lpa_core.registry import INIT_SEED, create_model
from lpa_core.vision_models import VISION_ARCHS, truncate

try:
    from lpa_core._torchvision import import_timm

    import_timm()
except ImportError as e:  # an environment set up before the vision track; CI sets LPA_REQUIRE_VISION=1 to fail instead
    if os.environ.get("LPA_REQUIRE_VISION"):
        raise
    pytest.skip(f"vision track needs torchvision and timm ({e}): pip install torch==2.13.0 torchvision==0.28.0 timm",
                allow_module_level=True)

torch.set_num_threads(1)
QUIET = lambda msg: None  # noqa: E731
FAMILIES = {"resnet": "resnet10_w16", "vit": "vit6_d64"}  # the smallest of each family
PAPER_PARAMS = {"resnet18": 11.2e6, "resnet34": 21.3e6, "vit12": 5.5e6, "vit24": 10.9e6}  # Sec 5.2, 2nd version
PAPER_BLOCKS = {"resnet18": 8, "resnet34": 16, "vit12": 12, "vit24": 24}
NB = 3  # batches per epoch of the tiny data: 24 images / batch 8


# --- tiny data ------------------------------------------------------------------------------------------------------

def tiny_images(n_train=24, n_test=12, size=8, classes=3, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    split = {k: (torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
                 torch.randint(0, classes, (n,), generator=g)) for k, n in (("train", n_train), ("test", n_test))}
    return TensorImages("tiny", Spec(classes, 3, size, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), split, device)


@pytest.fixture
def tiny(monkeypatch):
    """Every vision task in the test loads 8 x 8 images of 3 classes (24 train, 12 test), whatever the dataset."""
    vision._DATA.clear()
    monkeypatch.setattr(vision, "load_images", lambda name, cfg: tiny_images(device=cfg.device))
    yield
    vision._DATA.clear()


def vcfg(arch="resnet10_w16", **kw):
    base = dict(arch=arch, datasets=("cifar10",), seeds=(0,), epochs=2, batch_size=8, lr=0.05 if "resnet" in arch else 1e-3,
                weight_decay=5e-4 if "resnet" in arch else 0.05, eval_every=1, n_embed=5, ckpt_every_s=1e9,
                adaptive_warmup=1)
    base.update(kw)
    return TrainConfig(**base)


# --- 1. the model contract, for every registered model ---------------------------------------------------------------

def test_registry_names_the_valid_archs():
    with pytest.raises(ValueError, match=r"^arch: unknown 'nope' \(valid: resmlp, resnet18, resnet34, .*vit24.*\)$"):
        create_model("nope", d_in=(3, 32, 32), d_out=10)
    assert set(PAPER_BLOCKS) <= set(VISION_ARCHS)


@pytest.mark.parametrize("arch", list(PAPER_PARAMS))
def test_full_size_parameter_counts_match_the_paper_without_a_forward(arch):
    with torch.device("meta"):  # no memory, no init arithmetic, no forward
        model = create_model(arch, d_in=(3, 32, 32), d_out=10)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / PAPER_PARAMS[arch] - 1) < 0.03, n
    assert model.depth == PAPER_BLOCKS[arch]
    per_depth = [sum(p.numel() for p in model.params(depth=k)) for k in range(1, model.depth + 1)]
    assert per_depth == sorted(per_depth) and per_depth[-1] == n


@pytest.mark.parametrize("arch", list(VISION_ARCHS))
def test_depth_k_prediction_is_the_truncated_model(arch):
    """model(x, depth=k) == head(features[k-1]) == truncate(model, k)(x) for every k (8 x 8 inputs: cheap for the
    full-size models too); params(depth, first) lists stem, blocks first+1..depth and head."""
    torch.manual_seed(0)
    model = create_model(arch, d_in=(3, 8, 8), d_out=7).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        feats = model.features(x)
        full = model(x)
        assert len(feats) == model.depth and full.shape == (2, 7)
        assert torch.equal(model(x, depth=model.depth), full)
        for k, h in enumerate(feats, start=1):
            pred = model(x, depth=k)
            assert torch.equal(model.head(h), pred), k
            assert torch.equal(truncate(model, k)(x), pred), k
            assert model.head.pre_logits(h).shape[0] == 2
        assert not torch.equal(model(x, depth=1), full)
    ids = lambda ps: [id(p) for p in ps]  # noqa: E731
    mods = lambda *ms: [p for m in ms for p in m.parameters()]  # noqa: E731
    assert ids(model.params()) == ids(model.parameters())
    assert ids(model.params(depth=2)) == ids(mods(model.stem, model.blocks[0], model.blocks[1], model.head))
    assert ids(model.params(depth=3, first=2)) == ids(mods(model.stem, model.blocks[2], model.head))


def test_resnet_head_zero_pads_narrow_blocks_into_one_linear():
    model = create_model("resnet10_w16", d_in=(3, 8, 8), d_out=10).eval()
    h1 = model.features(torch.randn(2, 3, 8, 8))[0]  # 16 channels of 128
    z = model.head.pre_logits(h1)
    assert z.shape == (2, 128) and (z[:, 16:] == 0).all() and torch.equal(z[:, :16], h1.mean(dim=(2, 3)))
    fc = model.head.fc
    assert torch.allclose(model.head(h1), h1.mean(dim=(2, 3)) @ fc.weight[:, :16].T + fc.bias, atol=1e-6)
    norm = create_model("resnet10_w16", d_in=(3, 8, 8), d_out=10, head="pad_norm").eval()
    zn = norm.head.pre_logits(norm.features(torch.randn(2, 3, 8, 8))[1])
    assert (zn[:, 32:] == 0).all() and torch.allclose(zn[:, :32].mean(1), torch.zeros(2), atol=1e-5)
    with pytest.raises(ValueError, match="head"):
        create_model("vit6_d64", d_in=(3, 32, 32), d_out=10, head="pad_norm")


def test_resnet18_is_torchvisions_with_the_cifar_stem():
    from lpa_core._torchvision import import_torchvision

    tv = import_torchvision().models.resnet18(num_classes=10)
    tv.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    tv.maxpool = torch.nn.Identity()
    ours = create_model("resnet18", d_in=(3, 32, 32), d_out=10)
    assert [v.shape for v in ours.state_dict().values()] == [v.shape for v in tv.state_dict().values()]
    with torch.no_grad():
        for a, b in zip(ours.state_dict().values(), tv.state_dict().values()):
            a.copy_(b)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(ours.eval()(x), tv.eval()(x))


def test_vit_is_timms_vision_transformer():
    from lpa_core._torchvision import import_timm
    from lpa_core.vision_models import ViTStack

    torch.manual_seed(INIT_SEED + 3)  # create_model draws the init of seed 3 so
    ref = ViTStack.make_timm(import_timm(), 64, 6, 2, 4.0, 10, 3, 32)
    ours = create_model("vit6_d64", seeds=[3], d_in=(3, 32, 32), d_out=10)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(ours.eval()(x), ref.eval()(x))
    ref.blocks = ref.blocks[:2]  # timm's own forward, truncated
    assert torch.equal(ours(x, depth=2), ref(x))


# --- 2. inactive blocks: no update from gradient, weight decay or momentum (torch.optim skips grad None) -------------

def modules(model):
    return {"stem": model.stem, **{f"b{j + 1}": b for j, b in enumerate(model.blocks)}, "head": model.head}


def snapshot(task):
    """{module: (weights, optimizer state (step, momentum, moments), buffers)}, cloned."""
    out = {}
    for name, mod in modules(task.model).items():
        ps = list(mod.parameters())
        state = [v.clone() if torch.is_tensor(v) else v for p in ps for _, v in sorted(task.opt.state.get(p, {}).items())]
        out[name] = ([p.detach().clone() for p in ps], state, [b.clone() for b in mod.buffers()])
    return out


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) if torch.is_tensor(x) else x == y for x, y in zip(a, b))


def record_steps(task):
    """Wrap task.step: each step must change exactly the modules it asks for (weights and optimizer state), leave
    every other module's weights and optimizer state bit for bit, and leave the others' grads None. Blocks deeper
    than the forward reached keep their BatchNorm buffers too."""
    calls, orig = [], task.step

    def step(losses, params, runs=None):
        ids = {id(p) for p in params}
        requested = frozenset(n for n, m in modules(task.model).items() if any(id(p) in ids for p in m.parameters()))
        before = snapshot(task)
        orig(losses, params, runs)
        after = snapshot(task)
        for n, m in modules(task.model).items():
            w0, s0, b0 = before[n]
            w1, s1, b1 = after[n]
            if n in requested:
                assert not same(w0, w1) and not same(s0, s1), f"{n} did not step"
            else:
                assert same(w0, w1) and same(s0, s1), f"{n} changed in a step on {sorted(requested)}"
                assert all(p.grad is None for p in m.parameters())
        deepest = max([int(n[1:]) for n in requested if n.startswith("b")], default=0)
        for j in range(deepest + 1, task.model.depth + 1):
            assert same(before[f"b{j}"][2], after[f"b{j}"][2]), f"b{j}'s BatchNorm statistics moved"
        calls.append(requested)

    task.step = step
    return calls


def P(i):
    return frozenset({"stem", "head"} | {f"b{j}" for j in range(1, i + 1)})


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("paradigm", ["lpa", "sequential"])
def test_inactive_blocks_get_no_update_bit_for_bit(tiny, family, paradigm):
    """After a warm-up epoch (momentum buffers / Adam moments and step counts non-zero everywhere), with SGD
    Nesterov momentum + weight decay (ResNet) and AdamW + weight decay (ViT)."""
    L = {"resnet": 4, "vit": 6}[family]
    task = VisionTask(vcfg(FAMILIES[family], paradigm=paradigm, epochs=L))
    assert isinstance(task.opt, torch.optim.SGD if family == "resnet" else torch.optim.AdamW)
    assert all(g["weight_decay"] > 0 for g in task.opt.param_groups[:1])
    simultaneous(task, 0)
    assert all(p in task.opt.state for p in task.model.parameters())
    calls = record_steps(task)
    assert task.model.depth == L
    if paradigm == "lpa":
        PARADIGMS["lpa"](task, 1)
        assert calls == [P(i) for i in range(1, L + 1)] * NB + [P(L)] * NB
    else:
        for epoch in range(L):  # L epochs over L blocks: one stage each
            PARADIGMS["sequential"](task, epoch)
        assert calls == [frozenset({"stem", f"b{i}", "head"}) for i in range(1, L + 1) for _ in range(NB)]


def test_a_masked_out_run_takes_no_step(tiny):
    task = VisionTask(vcfg())
    before = snapshot(task)
    x, y = next(task.batches())
    task.step(task.loss(x, y), task.model.params(), runs=torch.tensor([False]))
    assert all(same(a[0], b[0]) for a, b in zip(before.values(), snapshot(task).values()))
    assert task.steps.tolist() == [0]


# --- 3. data --------------------------------------------------------------------------------------------------------

def write_idx(path, arr, gz=False):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    data = struct.pack(">I", 0x800 | arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(data)


def fake_fashion(folder, gz, n=(5, 3), seed=0):
    """IDX files of n train / test images (random 28 x 28) with labels, as .gz or raw; returns the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, out = np.random.default_rng(seed), {}
    for (split, (im, lb)), k in zip(images.IDX.items(), n):
        x, y = rng.integers(0, 256, (k, 28, 28), dtype=np.uint8), rng.integers(0, 10, k, dtype=np.uint8)
        write_idx(folder / (im + (".gz" if gz else "")), x, gz)
        write_idx(folder / (lb + (".gz" if gz else "")), y, gz)
        out[split] = (x, y)
    return out


def no_download(kind, root):
    raise urllib.error.URLError("Name or service not known")


@pytest.mark.parametrize("where", ["debian_gz", "raw", "raw_gz"])
def test_fashion_mnist_idx_reader(tmp_path, monkeypatch, where):
    monkeypatch.setattr(images, "_download", no_download)
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    src = {"debian_gz": tmp_path / "debian", "raw": raw, "raw_gz": raw}[where]
    want = fake_fashion(src, gz=where != "raw")
    got = load_fashion_mnist(tmp_path / "data", search=(tmp_path / "debian",))
    for split, (x, y) in want.items():
        assert torch.equal(got[split][0], torch.from_numpy(x)) and got[split][1].tolist() == y.tolist()
        assert got[split][1].dtype == torch.long
    assert all((raw / n).is_file() for pair in images.IDX.values() for n in pair)  # decompressed for torchvision
    data = TensorImages("fashion_mnist", images.DATASETS["fashion_mnist"], got, "cpu")
    assert data.x_train.shape == (5, 1, 32, 32) and data.x_train[:, :, :2].eq(0).all()  # zero border 28 -> 32
    assert torch.equal(data.x_train[:, 0, 2:30, 2:30], torch.from_numpy(want["train"][0]))


@pytest.mark.skipif(not (images.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="apt-get install -y dataset-fashion-mnist")
def test_real_fashion_mnist_from_debian(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "_download", no_download)
    got = load_fashion_mnist(tmp_path)
    assert got["train"][0].shape == (60_000, 28, 28) and got["test"][0].shape == (10_000, 28, 28)
    assert torch.bincount(got["train"][1]).tolist() == [6000] * 10 and torch.bincount(got["test"][1]).tolist() == [1000] * 10


def test_fashion_mnist_missing_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "_download", no_download)
    with pytest.raises(FileNotFoundError) as e:
        load_fashion_mnist(tmp_path / "data", search=(tmp_path / "nowhere",))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("datasets: fashion_mnist") and "apt-get install -y dataset-fashion-mnist" in msg


def fake_cifar(root, name, n=(4, 3), seed=0):
    folder, _, train, test, key = images.CIFAR[name]
    (root / folder).mkdir(parents=True)
    rng, out = np.random.default_rng(seed), {}
    for split, files in (("train", train), ("test", test)):
        xs, ys = [], []
        for f in files:
            x, y = rng.integers(0, 256, (n[split == "test"], 3072), dtype=np.uint8), rng.integers(0, 10, n[split == "test"]).tolist()
            with open(root / folder / f, "wb") as fh:
                pickle.dump({"data": x, key: y, "filenames": ["x.png"] * len(y)}, fh)
            xs.append(x)
            ys += y
        out[split] = (np.concatenate(xs).reshape(-1, 3, 32, 32), ys)
    return out


@pytest.mark.parametrize("name,n_train_files", [("cifar10", 5), ("cifar100", 1)])
def test_cifar_reader(tmp_path, monkeypatch, name, n_train_files):
    monkeypatch.setattr(images, "_download", no_download)
    want = fake_cifar(tmp_path, name)
    got = load_cifar(name, tmp_path)
    assert got["train"][0].shape == (4 * n_train_files, 3, 32, 32) and got["test"][0].shape == (3, 3, 32, 32)
    for split, (x, y) in want.items():
        assert torch.equal(got[split][0], torch.from_numpy(x)) and got[split][1].tolist() == y


def test_cifar_missing_offline_is_one_line_saying_what_to_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(images, "_download", no_download)
    monkeypatch.chdir(tmp_path)
    vision._DATA.clear()
    rc = main(["train", "--out", "out", "--arch", "resnet10_w16", "--datasets", "cifar100", "--data_dir", "nodata"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: datasets: cifar100 not found in nodata/cifar-100-python")
    assert "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in lines[0] and "into nodata/" in lines[0]
    assert not (tmp_path / "out").exists()


def test_batched_crop_and_flip_match_a_per_image_reference():
    x = torch.randint(0, 256, (6, 2, 5, 5), dtype=torch.uint8)
    g = torch.Generator().manual_seed(4)
    got = crop_flip(x, 2, g)
    g.manual_seed(4)
    off = torch.randint(0, 5, (2, 6), generator=g)
    flip = torch.rand(6, generator=g) < 0.5
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(6):
        ref = xp[b, :, off[0, b]:off[0, b] + 5, off[1, b]:off[1, b] + 5]
        assert torch.equal(got[b], ref.flip(2) if flip[b] else ref)
    assert flip.any() and not flip.all()


# --- 4. tiny runs through the one loop: every family x every paradigm ------------------------------------------------

@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("paradigm", list(PARADIGMS))
def test_tiny_run_of_each_family_under_each_paradigm(tiny, tmp_path, family, paradigm):
    cfg = vcfg(FAMILIES[family], paradigm=paradigm)
    status = train(cfg, tmp_path / "out", tmp_path / "ck", log=QUIET)
    assert status == ["ok"]
    out, L = tmp_path / "out", {"resnet": 4, "vit": 6}[family]
    keys = ["exp", "dataset", "arch", "paradigm", "seed"]
    lw = pd.read_csv(out / "layerwise.csv")
    assert list(lw.columns) == keys + ["depth", "metric", "value", "status"]
    assert len(lw) == 2 * L and set(lw.metric) == {"test_acc_pct", "test_loss"} and np.isfinite(lw.value).all()
    assert lw[lw.metric == "test_acc_pct"].value.between(0, 100).all()
    h = pd.read_csv(out / "history.csv")
    assert sorted(set(h.epoch)) == [1, 2] and set(h.metric) == {"train_loss", "train_acc_pct", "test_loss", "test_acc_pct"}
    s = pd.read_csv(out / "summary.csv").iloc[0]
    per_batch = {"lpa": L + 1, "lpa_grouped": -(-L // 2) + 1}.get(paradigm, 1)
    if paradigm != "adaptive_lpa":
        assert s.steps == 2 * NB * per_batch and s.effective_depth == L
    else:
        assert NB * (L + 1) < s.steps < 2 * NB * (L + 1) + NB and 1 <= s.effective_depth <= L
    assert s.samples == s.steps * 8 and s.n_blocks == L and s.status == "ok"
    assert s.reduction_pct == round(100 * (1 - s.effective_depth / L), 2) and s.params_effective <= s.params_per_run
    e = np.load(out / "embeddings.npz")
    assert e["emb"].shape[:2] == (L, 5) and e["emb"].dtype == np.float16 and e["labels"].shape == (5,)
    inf = pd.read_csv(out / "inference.csv")
    assert inf.depth.tolist() == list(range(1, L + 1)) and inf.params.is_monotonic_increasing and (inf.latency_ms > 0).all()
    assert inf.params.iloc[-1] == s.params_per_run
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["arch"] == FAMILIES[family] and {"torchvision", "timm"} <= set(run["versions"])
    assert set(pd.read_csv(out / "coeffs.csv").topology) == {"cascade"}  # every stack saves its shortcut coefficients


class Interrupt(Exception):
    pass


def test_vision_resume_after_interrupt_matches_uninterrupted(tiny, tmp_path, monkeypatch):
    """Killed in epoch 3 after the epoch-2 checkpoint (weights_only: model, SGD momentum, BN statistics,
    generator), restarted: the same numbers, history included."""
    cfg = vcfg(paradigm="lpa", epochs=3, ckpt_every_s=0, n_embed=0)
    train(cfg, tmp_path / "ref", tmp_path / "ck_ref", log=QUIET)
    real = PARADIGMS["lpa"]

    def dying(ctx, epoch):
        if epoch == 2:
            raise Interrupt
        real(ctx, epoch)
    monkeypatch.setattr(train_mod, "get_paradigm", lambda name: dying)
    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "out", tmp_path / "ck", log=QUIET)
    monkeypatch.setattr(train_mod, "get_paradigm", lambda name: real)
    logs = []
    train(cfg, tmp_path / "out", tmp_path / "ck", log=logs.append)
    assert any("resuming" in m and "at epoch 2" in m for m in logs)
    for name in ("layerwise.csv", "summary.csv", "history.csv"):
        a, b = pd.read_csv(tmp_path / "ref" / name), pd.read_csv(tmp_path / "out" / name)
        pd.testing.assert_frame_equal(a.drop(columns="wall_s", errors="ignore"), b.drop(columns="wall_s", errors="ignore"))


def test_vision_divergence_is_recorded_and_the_job_ends(tiny, tmp_path):
    status = train(vcfg(lr=1e12, epochs=2, n_embed=0), tmp_path / "out", tmp_path / "ck", log=QUIET)
    assert status == ["diverged"]
    s = pd.read_csv(tmp_path / "out/summary.csv")
    assert s.status.tolist() == ["diverged"] and s.diverged_epoch.between(1, 2).all()
    assert pd.read_csv(tmp_path / "out/layerwise.csv").value.isna().all()


def test_long_epochs_log_progress_between_epochs(tiny, tmp_path, monkeypatch):
    from lpa_core import task

    monkeypatch.setattr(task, "PROGRESS_S", 0.0)
    logs = []
    train(vcfg(epochs=1, n_embed=0), tmp_path / "out", tmp_path / "ck", log=logs.append)
    steps = [m for m in logs if "  step " in m]
    assert len(steps) == 3 and "step 3  lr 0.05  loss" in steps[-1]  # 24 images / batch 8, one line per step here


def test_cli_trains_on_a_tiny_cifar_folder(tmp_path, monkeypatch, capsys):
    """The real loader path end to end: a CIFAR-10 pickle folder the test writes, `python -m lpa_core train`."""
    monkeypatch.setattr(images, "_download", no_download)
    monkeypatch.chdir(tmp_path)
    vision._DATA.clear()
    fake_cifar(tmp_path / "data", "cifar10", n=(4, 5))  # 20 train, 5 test images of 32 x 32
    rc = main(["train", "--out", "out", "--arch", "vit6_d64", "--datasets", "cifar10", "--data_dir", "data",
               "--paradigm", "lpa", "--epochs", "1", "--batch_size", "10", "--lr", "1e-3", "--n_embed", "4", "--threads", "1"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "1 run: vit6_d64" in err and "epoch 1/1  test acc" in err and "done: 1 ok" in err
    assert pd.read_csv(tmp_path / "out/summary.csv").steps.tolist() == [2 * 7]  # 2 batches x (6 depths + full pass)
    assert np.load(tmp_path / "out/embeddings.npz")["emb"].shape == (6, 4, 64)
    vision._DATA.clear()


def test_imagenet_imagefolder_path(tmp_path, capsys):
    """ImageNet's streamed path (ImageFolder + DataLoader, 224 x 224 crops, patch 16) on a 2-class folder of PNGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for part, n in (("train", 4), ("val", 2)):
        for c in ("n01", "n02"):
            (tmp_path / "inet" / part / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "inet" / part / c / f"{i}.png")
    vision._DATA.clear()
    cfg = vcfg("vit6_d64", datasets=("imagenet",), imagenet_dir=str(tmp_path / "inet"), workers=0, batch_size=4,
               epochs=1, n_embed=3)
    assert train(cfg, tmp_path / "out", tmp_path / "ck", log=QUIET) == ["ok"]
    assert pd.read_csv(tmp_path / "out/summary.csv").steps.tolist() == [2]
    assert np.load(tmp_path / "out/embeddings.npz")["emb"].shape == (6, 3, 64)
    vision._DATA.clear()
    with pytest.raises(FileNotFoundError, match="^imagenet_dir: no .*train/train/"):
        images.FolderImages(tmp_path / "inet" / "train", images.DATASETS["imagenet"], "cpu")


# --- 5. config ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,key,words", [
    (dict(arch="resnet18", datasets=("saddle",)), "datasets", ["fashion_mnist", "cifar10", "cifar100", "imagenet"]),
    (dict(arch="vit12", datasets=("cifar10",), seeds=(0, 1)), "datasets/seeds", ["one run"]),
    (dict(arch="vit12", datasets=("cifar10",), depth=4), "depth", ["surfaces"]),
    (dict(arch="vit12", datasets=("cifar10",), head="pad_norm"), "head", ["ResNets"]),
    (dict(arch="resnet18", datasets=("imagenet",)), "imagenet_dir", ["ImageFolder"]),
    (dict(n_embed=10), "n_embed", ["vision archs"]),
    (dict(arch="resnet99"), "arch", ["resmlp", "resnet18", "vit24"]),
])
def test_vision_config_errors_name_the_key(kw, key, words):
    with pytest.raises(ValueError) as e:
        TrainConfig(**kw)
    assert str(e.value).startswith(f"{key}:") and all(w in str(e.value) for w in words), str(e.value)


def test_a_checkpoint_from_before_a_new_key_still_resumes():
    cfg = TrainConfig()
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("n_embed", "head")}
    assert same_config(old, cfg) and same_config(cfg.to_dict(), cfg)
    assert not same_config(old, TrainConfig(epochs=3))
    assert not same_config(old, TrainConfig(arch="resnet18", datasets=("cifar10",), head="pad_norm"))


# --- GPU ------------------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("family", list(FAMILIES))
def test_cuda_bf16_run(tiny, tmp_path, family):
    """The CUDA path (bf16 autocast, channels_last for ResNets) trains and reports like the CPU one."""
    status = train(vcfg(FAMILIES[family], paradigm="lpa", device="cuda"), tmp_path / "gpu", tmp_path / "ck", log=QUIET)
    assert status == ["ok"]
    assert np.isfinite(pd.read_csv(tmp_path / "gpu/layerwise.csv").value).all()
    assert "bf16" in pd.read_csv(tmp_path / "gpu/inference.csv").device.iloc[0]
    x = torch.randn(2, 3, 8, 8, device="cuda")
    assert len(depth_costs(VisionTask(vcfg(FAMILIES[family], device="cuda")).model, x, repeats=1, warmup=1)) > 0
