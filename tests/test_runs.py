"""lpa_core.runs: the manifest catches a truncated, changed or missing file; migrate brings old run folders in."""
import json
import shutil
from pathlib import Path

import pytest

from lpa_core import runs

QUICK = Path(__file__).resolve().parent.parent / "results/runs/quick/table1/resmlp/lpa"


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    shutil.copytree(QUICK, d)
    runs.migrate(d, "quick")
    return d


def test_migrated_run_verifies_and_records_identity(run_dir):
    info = runs.verify_run(run_dir)
    assert (info["track"], info["scale"], info["experiment"]) == ("surfaces", "quick", "table1")
    assert info["manifest"]["layerwise.csv"]["rows"] > 0 and "run.json" not in info["manifest"]
    assert info["config_hash"] == runs.config_hash(info["config"])


@pytest.mark.parametrize("fault", ["truncated", "garbage", "deleted"])
def test_damaged_file_is_named(run_dir, fault):
    path = run_dir / "layerwise.csv"
    data = path.read_bytes()
    if fault == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif fault == "garbage":
        path.write_bytes(bytes(reversed(data)))
    else:
        path.unlink()
    with pytest.raises(runs.RunError, match="layerwise.csv"):
        runs.verify_run(run_dir)


def test_missing_or_garbage_run_json(run_dir):
    (run_dir / "run.json").write_text("{not json")
    with pytest.raises(runs.RunError, match="run.json: unreadable"):
        runs.verify_run(run_dir)
    (run_dir / "run.json").unlink()
    with pytest.raises(runs.RunError, match="run.json: missing"):
        runs.verify_run(run_dir)


def test_edited_config_is_caught(run_dir):
    info = json.loads((run_dir / "run.json").read_text())
    info["config"]["lr"] = 0.02
    (run_dir / "run.json").write_text(json.dumps(info))
    with pytest.raises(runs.RunError, match="config_hash"):
        runs.verify_run(run_dir)


def test_dropping_an_unread_file_keeps_the_folder_verifiable_and_says_so(run_dir):
    from lpa_core import slim

    assert (run_dir / "grid.npz").is_file()
    assert slim.main(["--drop", "grid.npz", str(run_dir)]) == 0
    info = runs.verify_run(run_dir)
    assert not (run_dir / "grid.npz").exists() and "grid.npz" not in info["manifest"] and info["dropped"] == ["grid.npz"]
    (run_dir / "layerwise.csv").write_text("changed\n")
    with pytest.raises(runs.RunError, match="layerwise.csv"):
        runs.verify_run(run_dir)
