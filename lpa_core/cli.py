"""python -m lpa_core {train,table1,figures} ... ; bad input exits 2 with one line naming the key."""
import argparse
import sys
from dataclasses import fields
from pathlib import Path

import yaml

from lpa_core.config import TrainConfig


def _parse(field, text):
    if field.type == "tuple" or isinstance(field.default, tuple):
        kind = type(field.default[0]) if field.default else str
        return tuple(kind(v) for v in text.split(","))
    return type(field.default)(text)


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
    by_name = {f.name: f for f in fields(TrainConfig)}
    it = iter(rest)
    for tok in it:
        key = tok.lstrip("-").replace("-", "_")
        if not tok.startswith("--") or key not in by_name:
            raise ValueError(f"{key}: unknown option (valid: {', '.join('--' + k for k in by_name)})")
        val = next(it, None)
        if val is None:
            raise ValueError(f"{key}: missing value")
        try:
            overrides[key] = _parse(by_name[key], val)
        except ValueError:
            raise ValueError(f"{key}: cannot read '{val}' as {type(by_name[key].default).__name__}") from None
    cfg = TrainConfig.from_dict(overrides)
    from lpa_core.train import train

    status = train(cfg, args.out, args.ckpt_dir)
    print(f"done: {status.count('ok')} ok, {status.count('diverged')} diverged -> {args.out}", file=sys.stderr)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m lpa_core", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a group of runs (datasets x seeds) under one paradigm",
                       epilog="Every TrainConfig key is an option: " + ", ".join(
                           f"--{f.name} (default {','.join(map(str, f.default)) if isinstance(f.default, tuple) else f.default})"
                           for f in fields(TrainConfig)))
    t.add_argument("--out", required=True, help="folder for layerwise.csv, history.csv, summary.csv, grid.npz, run.json")
    t.add_argument("--config", help="YAML file of TrainConfig keys (options given on the command line win)")
    t.add_argument("--ckpt-dir", help="checkpoint folder (default checkpoints/<out>)")
    from lpa_core import fetch, linear_case, report

    for module in (report, linear_case, fetch):  # each adds its own subcommands
        module.add_commands(sub)
    args, rest = p.parse_known_args(argv)
    try:
        if args.cmd == "train":
            train_cmd(args, rest)
        else:
            if rest:
                raise ValueError(f"{rest[0]}: unknown option")
            args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
