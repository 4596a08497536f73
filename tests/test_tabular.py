"""Tabular datasets by name (lpa_core.tabular): csv:, parquet:, sklearn:, the task following the target, the residual
MLP sized by the data (fast path included), bad names as one line, and a run through the workflow."""
import numpy as np
import pandas as pd
import pytest
import torch

from lpa_core import registry, tabular
from lpa_core.config import TrainConfig
from lpa_core.paradigms import simultaneous
from lpa_core.surfaces import SurfaceTask


@pytest.fixture
def house(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, size=(300, 4))
    df = pd.DataFrame(x, columns=["a", "b", "c", "d"]).assign(town="x", price=x[:, 0] * 5 + 100)
    df.to_csv(tmp_path / "house.csv", index=False)
    df.assign(kind=np.where(x[:, 1] > 3, "big", "small")).to_parquet(tmp_path / "house.parquet")
    return tmp_path


def test_csv_regression_sizes_splits_and_train_only_standardisation(house):
    d = tabular.load(f"csv:{house}/house.csv", seed=0)
    assert d["kind"] == "regression" and d["d_in"] == 4 and d["d_out"] == 1  # the numeric columns but the target
    assert len(d["x_test"]) == 60 and len(d["x_val"]) == 24 and len(d["x_train"]) == 216
    assert np.allclose(d["x_train"].mean(0), 0, atol=1e-5) and np.allclose(d["x_train"].std(0), 1, atol=1e-4)
    assert not np.allclose(d["x_test"].mean(0), 0, atol=1e-3)  # the test split's own statistics are not used
    again, other = tabular.load(f"csv:{house}/house.csv", seed=0), tabular.load(f"csv:{house}/house.csv", seed=1)
    assert np.array_equal(d["x_test"], again["x_test"]) and not np.array_equal(d["x_test"], other["x_test"])


def test_string_labels_and_options_make_a_classification(house):
    d = tabular.load(f"parquet:{house}/house.parquet:target=kind:features=a+b", seed=0)
    assert d["kind"] == "classification" and d["classes"] == ["big", "small"] and d["d_in"] == 2 and d["d_out"] == 2
    assert d["y_train"].dtype == np.int64
    assert tabular.load("sklearn:iris", 0)["kind"] == "classification"
    assert tabular.load("sklearn:diabetes", 0)["kind"] == "regression"
    assert tabular.load("sklearn:linnerud", 0)["d_out"] == 3  # its three targets
    assert registry.label(f"csv:{house}/house.csv:target=price") == "csv_house"


@pytest.mark.parametrize("name,msg", [
    ("xls:{d}/house.csv", "unknown source 'xls:' in 'xls:{d}/house.csv' (valid: csv:, parquet:, sklearn:"),
    ("csv:{d}/none.csv", "no such file '{d}/none.csv'"),
    ("csv:{d}/house.csv:target=zz", "no column 'zz' in '{d}/house.csv' (valid: a, b, c, d, town, price)"),
    ("csv:{d}/words.csv", "has no numeric feature columns besides the target ['t'] (columns: s, t)"),
    ("sklearn:california_housing", "not a bundled scikit-learn dataset (it would download, or does not exist); valid offline: sklearn:breast_cancer"),
    ("csv:{d}/house.csv:feats=a", "bad option 'feats=a'"),
])
def test_bad_tabular_names_are_one_line_before_training(house, name, msg):
    pd.DataFrame({"s": ["a"] * 20, "t": ["b"] * 20}).to_csv(house / "words.csv", index=False)
    with pytest.raises(ValueError) as e:
        TrainConfig(datasets=(name.format(d=house),))
    assert str(e.value).startswith("datasets: ") and msg.format(d=house) in str(e.value) and "\n" not in str(e.value)


def test_a_tabular_dataset_trains_alone_in_its_job(house):
    with pytest.raises(ValueError, match="datasets: a tabular dataset .* trains alone in its job"):
        TrainConfig(datasets=(f"csv:{house}/house.csv", "saddle"))


def test_the_fast_path_takes_any_input_and_output_size(monkeypatch):
    """linnerud: 3 features -> 3 targets; the hand-written backward gives autograd's parameters after an epoch."""
    cfg = TrainConfig(datasets=("sklearn:linnerud",), seeds=(0, 1), depth=3, batch_size=4, epochs=1)
    got = {}
    for fast in ("1", "0"):
        monkeypatch.setenv("LPA_FAST", fast)
        task = SurfaceTask(cfg)
        assert task.fast == (fast == "1") and task.model.stem.weight.shape[1:] == (10, 3)
        simultaneous(task, 0)
        got[fast] = [p.detach().clone() for p in task.model.parameters()]
    for a, b in zip(got["1"], got["0"]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_classification_run_writes_ce_and_accuracy(house, tmp_path):
    from lpa_core.train import train

    cfg = TrainConfig(datasets=(f"parquet:{house}/house.parquet:target=kind",), seeds=(0,), depth=2, epochs=3, eval_every=1)
    train(cfg, tmp_path / "run", tmp_path / "ckpt")
    lw = pd.read_csv(tmp_path / "run/layerwise.csv")
    assert set(lw.metric) == {"ce", "acc_pct"} and set(lw.depth) == {1, 2}
    acc = lw[(lw.metric == "acc_pct") & (lw.depth == 2)].value.iloc[0]
    assert acc > 70  # 'big' vs 'small' is a threshold on one standardised feature
    hist = pd.read_csv(tmp_path / "run/history.csv")
    assert {"train_ce", "test_ce", "test_acc_pct", "val_ce", "val_acc_pct"} <= set(hist.metric)


def test_a_tabular_dataset_through_the_workflow(tmp_path, house):
    from tests.test_workflow import snakemake, workdir

    def edit(cfg):
        cfg["table1"].update(datasets=["csv:house.csv:target=price"], paradigms=["simultaneous", "lpa"])
        cfg["scales"]["quick"]["table1"] = {"seeds": [0, 1], "train": {"epochs": 3, "eval_every": 1}}
    (tmp_path / "wf").mkdir()
    wd = workdir(tmp_path / "wf", edit)
    (house / "house.csv").rename(wd / "house.csv")
    r = snakemake(wd, "results/tables/quick/table1.csv", "figures/quick/fig2_surfaces.png", "--cores", "2", "--config", "scale=quick")
    assert r.returncode == 0, r.stderr[-3000:]
    t = pd.read_csv(wd / "results/tables/quick/table1.csv")
    assert set(t.dataset) == {"csv:house.csv:target=price"} and set(t.metric) == {"mse", "mae"} and (t.n_seeds == 2).all()
    assert (wd / "figures/quick/fig3_layerwise_csv_house.png").stat().st_size > 3_000
    (wd / "house.csv").unlink()  # a missing file: one line naming the key, before any job
    r = snakemake(wd, "-n", "--forceall", "--config", "scale=quick")
    assert r.returncode != 0 and "config.table1.datasets: no such file 'house.csv'" in r.stderr + r.stdout


def image_folder(root, split=True, n=6):
    from PIL import Image

    rng = np.random.default_rng(0)
    for part in ("train", "test") if split else ("",):
        for k, c in enumerate(["dark", "light"]):
            (root / part / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = np.clip(rng.normal(60 + 130 * k, 20, size=(12, 16, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(root / part / c / f"{i}.png")
    return root


def test_an_image_folder_by_name(tmp_path):
    from lpa_core import images
    from lpa_core.train import train

    spec, split = images.load_folder(f"imagefolder:{image_folder(tmp_path / 'split')}:size=16")
    assert (spec.classes, spec.channels, spec.size) == (2, 3, 16) and split["train"][0].shape == (12, 3, 16, 16)
    assert len(split["test"][0]) == 12 and split["train"][0].dtype == torch.uint8
    spec, split = images.load_folder(f"imagefolder:{image_folder(tmp_path / 'flat', split=False, n=10)}")
    assert spec.size == 32 and len(split["test"][0]) == 4 and len(split["train"][0]) == 16  # a fixed 20 % holdout
    cfg = TrainConfig(arch="resnet10_w16", datasets=(f"imagefolder:{tmp_path / 'split'}:size=16",), epochs=1,
                      batch_size=6, n_embed=0)
    train(cfg, tmp_path / "run", tmp_path / "ckpt")
    lw = pd.read_csv(tmp_path / "run/layerwise.csv")
    assert set(lw.metric) == {"test_acc_pct", "test_loss"} and lw.value.notna().all()
    for name, msg in [(f"imagefolder:{tmp_path}/none", "no such folder"), (f"imagefolder:{tmp_path}/split:px=3", "bad option 'px=3'"),
                      (f"imagefolder:{tmp_path}/split/train/dark", "needs at least 2 class subfolders")]:
        with pytest.raises(ValueError, match=f"datasets: .*{msg}"):
            TrainConfig(arch="resnet10_w16", datasets=(name,))
