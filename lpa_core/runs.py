"""Run identity: what a finished run folder is, and the one check every reader of a run applies.

A training job writes its result files, then `run.json` last, atomically (lpa_core.io). Besides the resolved
config and provenance, run.json records the run's identity and a manifest of every file the run wrote:

  track        surfaces | vision | lm (TrainConfig.task)
  scale        the workflow scale the run belongs to (paper, quick, cpu, ...; 'adhoc' outside the workflow)
  experiment   cfg.exp (table1, ancre, table2, ...)
  config_hash  CONFIG_HASH_LEN hex digits of sha256 over the resolved config (canonical JSON)
  manifest     {file name: {"bytes": int, "sha256": hex, "rows": data rows of a CSV, else null}}

A run folder without a readable run.json holding a manifest is not a finished run, and a file that does not
match its manifest entry is damaged: `verify_run` raises RunError, one line naming the file and the fix. Run
folders written before manifests existed are brought in with `migrate` (python -m lpa_core runs migrate).
"""
import csv
import hashlib
import json
from pathlib import Path

from lpa_core import io

CONFIG_HASH_LEN = 16
RUN_JSON = "run.json"
# TrainConfig keys that say how a run was executed, not what it computes: left out of config_hash and of the
# staleness check (threads follows Snakemake's --cores; the checkpoint period and loader workers change no number)
EXECUTION_KEYS = ("threads", "ckpt_every_s", "workers")


class RunError(ValueError):
    """A run folder that is not a finished, intact run; the message is one line naming the file and the fix."""


def config_hash(config):
    """Hash of a resolved config dict (key order and list/tuple spelling do not matter; EXECUTION_KEYS left out)."""
    config = {k: v for k, v in config.items() if k not in EXECUTION_KEYS}
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:CONFIG_HASH_LEN]


def file_entry(path):
    """Manifest entry of one file: bytes, sha256 and, for a CSV, its number of data rows."""
    path = Path(path)
    data = path.read_bytes()
    rows = None
    if path.suffix == ".csv":
        rows = max(0, sum(1 for _ in csv.reader(data.decode(errors="replace").splitlines())) - 1)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "rows": rows}


def manifest(run_dir):
    """Entries for every file of a run folder but run.json (temporary and hidden files excluded), by name."""
    return {p.name: file_entry(p) for p in sorted(Path(run_dir).iterdir())
            if p.is_file() and p.name != RUN_JSON and not p.name.startswith(".")}


def finish_run(run_dir, info, track, scale, experiment):
    """Write run.json last, atomically: `info` (config, provenance, ...) plus identity and manifest."""
    ident = {"track": track, "scale": scale, "experiment": experiment, "config_hash": config_hash(info["config"])}
    io.write_json(Path(run_dir) / RUN_JSON, {**info, **ident, "manifest": manifest(run_dir)})


def refinish(run_dir, **extra):
    """run.json again, with its manifest made anew and `extra` recorded, after a documented slimming of a verified
    folder (lpa_core.slim --drop, lpa_core.tune.lean): what is kept still verifies, and the record says what is not."""
    info = read_run_json(run_dir)
    keep = {k: v for k, v in info.items() if k not in ("track", "scale", "experiment", "config_hash", "manifest")}
    finish_run(run_dir, {**keep, **extra}, info["track"], info["scale"], info["experiment"])


def _fix(run_dir):
    return f"re-train that run or delete {run_dir}"


def read_run_json(run_dir):
    """run.json of a run folder, parsed; RunError when missing or unreadable."""
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        raise RunError(f"{path}: missing, the run did not finish; {_fix(run_dir)}")
    try:
        info = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: unreadable ({str(e).splitlines()[0]}); {_fix(run_dir)}") from None
    if not isinstance(info, dict) or "config" not in info:
        raise RunError(f"{path}: not a run record (no config); {_fix(run_dir)}")
    return info


def verify_run(run_dir):
    """The run's run.json after checking every manifest entry against the file on disk; RunError otherwise."""
    run_dir = Path(run_dir)
    info = read_run_json(run_dir)
    files = info.get("manifest")
    if not isinstance(files, dict):
        raise RunError(f"{run_dir / RUN_JSON}: no manifest (an older run folder: python -m lpa_core runs migrate "
                       f"{run_dir}); {_fix(run_dir)}")
    if info.get("config_hash") != config_hash(info["config"]):
        raise RunError(f"{run_dir / RUN_JSON}: its config does not match its config_hash (edited by hand?); {_fix(run_dir)}")
    for name, want in files.items():
        path = run_dir / name
        if not path.is_file():
            raise RunError(f"{path}: missing (listed in the run's manifest); {_fix(run_dir)}")
        data = path.read_bytes()  # bytes and sha256 only: a damaged file is never parsed
        have = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if have["bytes"] != want["bytes"]:
            raise RunError(f"{path}: {have['bytes']} bytes, the run wrote {want['bytes']} (truncated or changed); {_fix(run_dir)}")
        if have["sha256"] != want["sha256"]:
            raise RunError(f"{path}: content differs from what the run wrote (sha256); {_fix(run_dir)}")
    return info


def migrate(run_dir, scale):
    """Bring a run folder written before manifests into the contract, in place: identity and a manifest of the files
    it holds now (marked 'migrated'). A folder that already has a manifest is verified and left as it is."""
    info = read_run_json(run_dir)
    if isinstance(info.get("manifest"), dict):
        return verify_run(run_dir)
    from lpa_core.config import TrainConfig

    task = TrainConfig.from_dict(_known(info["config"])).task
    info["migrated"] = io.now()
    finish_run(run_dir, info, task, scale, info["config"].get("exp", "adhoc"))
    return verify_run(run_dir)


def _known(config):
    from dataclasses import fields

    from lpa_core.config import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in config.items() if k in names}


def config_changes(recorded, asked):
    """How a run's recorded config differs from the resolved config asked of it now: 'key recorded -> asked' per
    key, EXECUTION_KEYS left out. A key the record lacks (added to TrainConfig since) counts as its default."""
    from lpa_core.config import TrainConfig

    defaults = TrainConfig.resolved({})
    changes = []
    for k in sorted(set(recorded) | set(asked)):
        if k in EXECUTION_KEYS:
            continue
        old, new = recorded.get(k, defaults.get(k, "(none)")), asked.get(k, "(none)")
        if isinstance(old, list) or isinstance(new, list):
            same = list(old) == list(new) if isinstance(old, list) and isinstance(new, list) else False
        else:
            same = old == new
        if not same:
            changes.append(f"{k} {_short(old)} -> {_short(new)}")
    return changes


def _short(v):
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


def check_run(run_dir, asked, scale):
    """Why the run folder cannot stand for the run asked of it (`asked`: a resolved config, TrainConfig.resolved),
    or None when it can: 'missing' (no run.json), 'damaged: <the RunError line>', 'stale: <key old -> new, ...>'."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_JSON).is_file():
        return "missing"
    try:
        info = verify_run(run_dir)
    except RunError as e:
        return f"damaged: {e}"
    changes = config_changes(info["config"], asked)
    if info.get("scale") != scale:
        changes.insert(0, f"scale {info.get('scale')} -> {scale}")
    return f"stale: {'; '.join(changes)}" if changes else None
