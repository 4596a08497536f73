"""lpa_core.registry: the one home of every name, importable without torch, and plugins that add names from a user's
own file (CLI and workflow)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lpa_core import registry

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = '''
import torch
from lpa_core.models import ResMLP
from lpa_core.registry import register_model, register_paradigm, register_surface


@register_surface
def bowl(x, y):
    return x**2 + torch.cos(3 * y)


@register_paradigm
def lpa_then_e2e(ctx, epoch):
    """LPA in the first epoch, then end-to-end (a user's paradigm built from two of ours)."""
    from lpa_core.paradigms import lpa, simultaneous

    (lpa if epoch == 0 else simultaneous)(ctx, epoch)


@register_model(task="surfaces")
def my_mlp(*, seeds, d_in, d_out, width, **kw):  # every model's signature (lpa_core.registry.create_model)
    return ResMLP(seeds, d_in, d_out, width=width + 1, **kw)
'''


def lpa(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lpa_core", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_names_and_the_report_import_without_torch():
    code = ("import sys; import lpa_core.registry, lpa_core.cli, lpa_core.report.tables, lpa_core.report.figures, "
            "lpa_core.report.html, lpa_core.report.claims, lpa_core.config as c; c.task_of('vit12'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_every_builtin_name_resolves_to_its_implementation():
    for kind, reg in registry.REGISTRIES.items():
        if kind == "model":
            continue  # below, by task
        for name in reg:
            assert reg[name] is not None, (kind, name)
    assert registry.PARADIGMS["lpa"].__name__ == "lpa" and registry.task_of("vit12") == "vision"
    assert registry.MODELS.names(task="surfaces") == ["resmlp"] and registry.task_of("lm_tiny") == "lm"
    assert registry.MODELS["lm_tiny"] is registry.MODELS["lm_tiny"]  # a resolved builder is not taken for a lazy one
    for name in registry.MODELS:
        assert callable(registry.MODELS[name])
    with pytest.raises(ValueError, match=r"paradigm: unknown 'magic' \(valid: simultaneous, sequential"):
        registry.PARADIGMS["magic"]


def test_no_name_list_is_restated_outside_the_registry():
    """A line naming more than half of a kind's built-in names (at least 3) outside lpa_core/registry.py and the module
    that defines them is a restated list: read the registry instead. Topology variant lists (ancre_add, ...; the
    workflow's topology x wiring names) are another kind of name."""
    files = [*ROOT.glob("lpa_core/**/*.py"), *ROOT.glob("workflow/**/*.smk"), *ROOT.glob("workflow/**/*.yaml"),
             ROOT / "Snakefile", *ROOT.glob("benchmarks/*.py")]
    bad = []
    for kind, reg in registry.REGISTRIES.items():
        homes = set(reg.homes.values())
        for f in files:
            mod = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            if f.name == "registry.py" or mod in homes or mod.removesuffix(".__init__") in homes:
                continue
            for i, line in enumerate(f.read_text().splitlines(), 1):
                hit = {n for n in reg if re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", line)}
                if len(hit) >= max(3, len(reg) // 2 + 1) and "_add" not in line:
                    bad.append(f"{f.relative_to(ROOT)}:{i}: {kind} names {sorted(hit)}")
    assert not bad, "\n".join(bad)


def test_schema_names_are_checked_against_the_registry():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    registry.check_names(cfg, schema)  # the shipped config is all registered names
    cfg["table1"]["paradigms"] = ["lpa", "magic"]
    with pytest.raises(ValueError, match=r"config.table1.paradigms: unknown 'magic' \(valid: simultaneous"):
        registry.check_names(cfg, schema)
    cfg["table1"]["paradigms"] = ["lpa"]
    cfg["ancre"]["runs"] = {"nope": ["cascade"]}
    with pytest.raises(ValueError, match="config.ancre.runs.nope: unknown 'nope'"):
        registry.check_names(cfg, schema)


def test_a_plugin_adds_a_surface_a_paradigm_and_a_model_through_the_cli(tmp_path):
    (tmp_path / "myplug.py").write_text(PLUGIN)
    out = tmp_path / "run"
    r = lpa("--plugins", str(tmp_path / "myplug.py"), "train", "--out", str(out), "--arch", "my_mlp",
            "--datasets", "bowl,saddle", "--paradigm", "lpa_then_e2e", "--epochs", "2", "--n_train", "200",
            "--n_test", "100", "--grid", "8", "--eval_every", "1", "--depth", "3")
    assert r.returncode == 0, r.stderr
    lw = pd.read_csv(out / "layerwise.csv")
    assert set(lw.dataset) == {"bowl", "saddle"} and set(lw.paradigm) == {"lpa_then_e2e"} and set(lw.depth) == {1, 2, 3}
    assert lw["value"].notna().all()
    # the table picks the plugin's names up with the same flag (and orders the paradigm after the built-in ones)
    r = lpa("--plugins", str(tmp_path / "myplug.py"), "table", "table1", "--runs", str(out), "--paper",
            "config/paper_results.csv", "--out-csv", str(tmp_path / "t.csv"))
    assert r.returncode == 0, r.stderr
    assert {"bowl", "saddle"} <= set(pd.read_csv(tmp_path / "t.csv").dataset)


@pytest.mark.parametrize("plugin,why", [("no_such_module_xyz", "ModuleNotFoundError"), ("broken.py", "ZeroDivisionError")])
def test_a_plugin_that_fails_to_import_is_one_line_naming_it(tmp_path, plugin, why):
    (tmp_path / "broken.py").write_text("x = 1 / 0\n")
    r = lpa("--plugins", plugin, "train", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 2 and not (tmp_path / "o").exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"plugins: cannot import '{plugin}'" in lines[0] and why in lines[0], r.stderr


def test_a_plugin_surface_and_paradigm_flow_through_the_workflow(tmp_path):
    from tests.test_workflow import snakemake, workdir

    def edit(cfg):
        cfg["plugins"] = ["myplug.py"]
        cfg["table1"].update(datasets=["bowl", "saddle"], paradigms=["simultaneous", "lpa_then_e2e"])
        cfg["scales"]["quick"]["table1"] = {"seeds": [0], "train": {
            "epochs": 2, "n_train": 200, "n_test": 100, "batch_size": 50, "eval_every": 1, "grid": 8}}
    wd = workdir(tmp_path, edit)
    (wd / "myplug.py").write_text(PLUGIN)
    targets = ["results/tables/quick/table1.csv", "figures/quick/fig3_layerwise_bowl.png", "figures/quick/fig2_surfaces.png"]
    r = snakemake(wd, *targets, "--cores", "2", "--config", "scale=quick")
    assert r.returncode == 0, r.stderr[-3000:]
    t = pd.read_csv(wd / "results/tables/quick/table1.csv")
    assert set(t.dataset) == {"bowl", "saddle"} and set(t.paradigm) == {"simultaneous", "lpa_then_e2e"}
    assert list(t.paradigm.drop_duplicates()) == ["simultaneous", "lpa_then_e2e"]  # registry order: built-ins first
    assert (wd / "figures/quick/fig3_layerwise_bowl.png").stat().st_size > 3_000
    # an unregistered name (no plugin) stops the workflow before any job, naming the key
    (wd / "myplug.py").write_text("")
    r = snakemake(wd, "-n", "--config", "scale=quick")
    assert r.returncode != 0 and "table1.datasets: unknown 'bowl'" in r.stderr + r.stdout


@pytest.mark.parametrize("example,rule,n", [("plugin.yaml", "train_surfaces", 3), ("tabular.yaml", "train_surfaces", 4),
                                            ("imagefolder.yaml", "train_vision", 18)])
def test_the_example_configs_schedule_their_jobs(tmp_path, example, rule, n):
    """One surface job per paradigm; the quick vision grid (2 models x 8 paradigms, one unit size, one lr)."""
    from tests.test_tabular import image_folder
    from tests.test_workflow import snakemake, workdir

    wd = workdir(tmp_path)
    image_folder(wd / "data/my_images", split=False)
    r = snakemake(wd, "-n", "--configfile", f"config/examples/{example}", "--config", "scale=quick")
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(rf"^{rule}\s+{n}$", r.stdout, re.M), r.stdout[-3000:]


def imagefolder_workdir(tmp_path, name):
    """The workflow in tmp_path at the quick scale, its vision track on image folder `name` only: one arch, two
    paradigms at 1 epoch, no extra unit sizes or learning rates (2 training jobs)."""
    from tests.test_workflow import workdir

    def edit(cfg):
        cfg["vision"].update(paradigms=["simultaneous", "lpa"], table3={"arch": "resnet18", "paradigms": ["simultaneous", "lpa"]})
        q = cfg["scales"]["quick"]
        q["tracks"] = ["vision"]
        q["vision"].update(datasets=[name], ablation={"arch": "resnet18", "datasets": [name]}, archs={"resnet18": "resnet10_w16"},
                           group_sizes=[], lr_sweep=[1])
        q["vision"]["recipes"]["resnet"].update(batch_size=4, epochs=1)
        q["vision"]["train"].update(train_subset=0, test_subset=0, n_embed=12)
    return workdir(tmp_path, edit)


@pytest.mark.parametrize("split", [True, False])
def test_an_image_folder_in_the_vision_track_schedules_its_runs_under_its_label(tmp_path, split):
    from tests.test_tabular import image_folder
    from tests.test_workflow import snakemake

    wd = imagefolder_workdir(tmp_path, "imagefolder:my pics/shapes:size=16")
    image_folder(wd / "my pics/shapes", split=split)
    r = snakemake(wd, "-n", "-p", "--config", "scale=quick")
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"^train_vision\s+2$", r.stdout, re.M), r.stdout[-3000:]
    assert "--datasets 'imagefolder:my pics/shapes:size=16'" in r.stdout  # the job gets the name, quoted
    assert "runs/quick/table2/imagefolder_shapes/resnet10_w16/lpa/seed0" in r.stdout  # paths the label
    assert "figures/quick/fig4_layerwise_imagefolder_shapes.png" in r.stdout


@pytest.mark.parametrize("bad,msg", [("nothere", "no such folder 'nothere'"), ("flat/dark", "'flat/dark' needs at least 2 class subfolders"),
                                     ("", "unknown source 'cifar:'")])
def test_a_bad_image_folder_is_one_line_before_any_job(tmp_path, bad, msg):
    from tests.test_tabular import image_folder
    from tests.test_workflow import snakemake

    wd = imagefolder_workdir(tmp_path, f"imagefolder:{bad}" if bad else "cifar:x")
    image_folder(wd / "flat", split=False)
    r = snakemake(wd, "-n", "--config", "scale=quick")
    assert r.returncode != 0 and re.search(rf"config\.scales\.quick\.vision\.(ablation\.)?datasets: {re.escape(msg)}",
                                           r.stderr + r.stdout), r.stdout[-2000:]
    assert "train_vision" not in r.stdout


@pytest.mark.slow
def test_an_image_folder_flows_into_the_vision_tables_figures_and_report(tmp_path):
    from tests.test_tabular import image_folder
    from tests.test_workflow import snakemake

    wd = imagefolder_workdir(tmp_path, "imagefolder:shapes")
    image_folder(wd / "shapes")
    r = snakemake(wd, "--cores", "2", "--config", "scale=quick")
    assert r.returncode == 0, r.stderr[-3000:]
    t = pd.read_csv(wd / "results/tables/quick/table2.csv")
    assert set(t.dataset) == {"imagefolder:shapes"} and set(t.paradigm) == {"simultaneous", "lpa"} and t["mean"].notna().all()
    for f in ("fig4_layerwise_imagefolder_shapes", "fig5_tsne_imagefolder_shapes_resnet10_w16", "fig6_curves_imagefolder_shapes"):
        assert (wd / f"figures/quick/{f}.png").stat().st_size > 3_000, f
    assert "imagefolder:shapes" in (wd / "results/report_quick.html").read_text()


def test_a_plugin_vision_model_has_the_one_signature_too(tmp_path):
    """A vision model of a plugin: the same builder signature as a surface model's (d_in = the images' shape)."""
    from tests.test_tabular import image_folder

    (tmp_path / "vplug.py").write_text('''
from lpa_core.registry import register_model
from lpa_core.vision_models import ResNetStack, image_keys


@register_model(task="vision")
def resnet_two(*, seeds, d_in, d_out, **keys):
    assert d_in == (3, 16, 16) and d_out == 2, (d_in, d_out)
    return ResNetStack((1, 1), widths=(8, 16), **image_keys(d_in, d_out), **keys)
''')
    image_folder(tmp_path / "imgs")
    r = lpa("--plugins", str(tmp_path / "vplug.py"), "train", "--out", str(tmp_path / "run"), "--arch", "resnet_two",
            "--datasets", f"imagefolder:{tmp_path / 'imgs'}:size=16", "--epochs", "1", "--batch_size", "4", "--n_embed", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    lw = pd.read_csv(tmp_path / "run/layerwise.csv")
    assert set(lw.depth) == {1, 2} and lw.value.notna().all()
