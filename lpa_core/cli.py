"""python -m lpa_core [--plugins MODULE|FILE.py,...] {train,runs,table,figures,...} ... ; bad input exits 2 with one
line naming the key. --plugins (anywhere on the line) imports user modules that register names (lpa_core.registry)
before anything resolves one; so do those in $LPA_PLUGINS (the workflow's `plugins`)."""
import argparse
import os
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

import yaml

from lpa_core import registry, runs
from lpa_core.config import TrainConfig


def train_cmd(args, rest):
    overrides = {}
    if args.config:
        if not Path(args.config).is_file():
            raise ValueError(f"config: no such file '{args.config}'")
        try:
            loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"config: cannot read '{args.config}' as YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"config: '{args.config}' must hold a mapping of TrainConfig keys")
        overrides.update(loaded)
    overrides.update(TrainConfig.parse_options(rest))
    cfg = TrainConfig.from_dict(overrides)
    if args.parent_pid:
        watch_parent(args.parent_pid)
    from lpa_core.train import train

    status = train(cfg, args.out, args.ckpt_dir, scale=args.scale)
    print(f"done: {status.count('ok')} ok, {status.count('diverged')} diverged -> {args.out}", file=sys.stderr)


def watch_parent(pid, every_s=0.5):
    """End this process as soon as process `pid` is gone (or a zombie): a training job started by Snakemake
    (--parent-pid $PPID) never outlives a killed workflow. Its checkpoints stay; the next run resumes from them."""
    def alive():
        if not Path("/proc/self/stat").exists():  # no procfs (macOS): a zombie parent counts as alive there
            try:
                os.kill(pid, 0)
                return True
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False

    def watch():
        while alive():
            time.sleep(every_s)
        print(f"error: parent process {pid} (the workflow) is gone; stopping this training job", file=sys.stderr, flush=True)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def run_dirs(paths):
    """Run folders: each path that holds run.json, or every folder below it that does."""
    out = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such folder")
        out += [p] if (p / runs.RUN_JSON).is_file() else sorted(f.parent for f in p.rglob(runs.RUN_JSON))
    return out


def runs_cmd(args):
    """runs verify | migrate: one line per run folder that is not a finished, intact run; exit 1 if any."""
    bad, dirs = 0, run_dirs(args.dirs)
    for d in dirs:
        try:
            if args.action == "verify":
                runs.verify_run(d)
            else:
                scale = args.scale or _scale_of(d)
                info = runs.migrate(d, scale)
                if info.get("scale") != scale:
                    raise runs.RunError(f"{d / runs.RUN_JSON}: already has a manifest, of scale {info.get('scale')}, not {scale}")
        except runs.RunError as e:
            print(f"error: {e}", file=sys.stderr)
            bad += 1
    print(f"{args.action}: {len(dirs) - bad} ok, {bad} failed", file=sys.stderr)
    return 1 if bad else 0


def _scale_of(d):
    parts = Path(os.path.abspath(d)).parts
    if "runs" in parts[:-1]:
        return parts[parts.index("runs") + 1]
    raise ValueError(f"scale: '{d}' is not under a runs/<scale>/ folder; give --scale")


def pop_plugins(argv):
    """(plugins, argv without them): every `--plugins a,b` (or --plugins=a,b) on the command line."""
    plugins, out, it = [], [], iter(argv)
    for tok in it:
        if tok == "--plugins" or tok.startswith("--plugins="):
            val = tok.partition("=")[2] if "=" in tok else next(it, "")
            plugins += [v for v in val.split(",") if v]
        else:
            out.append(tok)
    return plugins, out


def main(argv=None):
    plugins, argv = pop_plugins(sys.argv[1:] if argv is None else list(argv))
    plugins = [p for p in os.environ.get(registry.PLUGINS_ENV, "").split(",") if p] + plugins
    try:
        registry.load_plugins(plugins)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    p = argparse.ArgumentParser(prog="python -m lpa_core", description=__doc__)
    p.add_argument("--plugins", help="comma-separated modules or .py files that register names (lpa_core.registry)")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a group of runs (datasets x seeds) under one paradigm",
                       epilog="Every TrainConfig key is an option: " + ", ".join(
                           f"--{f.name} (default {','.join(map(str, f.default)) if isinstance(f.default, tuple) else f.default})"
                           for f in fields(TrainConfig)))
    t.add_argument("--out", required=True, help="folder for layerwise.csv, history.csv, summary.csv, grid.npz, run.json")
    t.add_argument("--config", help="YAML file of TrainConfig keys (options given on the command line win)")
    t.add_argument("--ckpt-dir", help="checkpoint folder (default checkpoints/<out>)")
    t.add_argument("--scale", default="adhoc", help="the workflow scale the run belongs to, recorded in run.json")
    t.add_argument("--parent-pid", type=int, help="stop when this process ends (the workflow passes $PPID)")
    sub.add_parser("tune", add_help=False, help="learning-rate trials on validation, then the seeds at the pick "
                   "(python -m lpa_core tune --help: lpa_core.tune)")
    r = sub.add_parser("runs", help="check run folders against their manifest, or bring older ones in")
    r.add_argument("action", choices=("verify", "migrate"),
                   help="verify: every file matches run.json's manifest; migrate: give a run folder written before "
                        "manifests its identity and manifest, in place (one that has them is only verified)")
    r.add_argument("dirs", nargs="+", help="run folders, or folders to search for them")
    r.add_argument("--scale", help="migrate: the scale of the runs (default: the folder after runs/ in the path)")
    r.set_defaults(func=runs_cmd)
    from lpa_core import cost, fetch, linear_case, report

    for module in (report, linear_case, fetch, cost):  # each adds its own subcommands
        module.add_commands(sub)
    args, rest = p.parse_known_args(argv)
    try:
        if args.cmd == "train":
            train_cmd(args, rest)
        elif args.cmd == "tune":
            from lpa_core import tune

            tune.tune(rest, log=lambda m: print(m, file=sys.stderr, flush=True), watch=watch_parent)
        else:
            if rest:
                raise ValueError(f"{rest[0]}: unknown option")
            rc = args.func(args)
            return rc if isinstance(rc, int) else 0
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
