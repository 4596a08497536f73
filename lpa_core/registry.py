"""The one home of every name: surfaces, image datasets, models, paradigms and topologies (timm's style).

    from lpa_core.registry import register_surface, register_paradigm

    @register_surface
    def bowl(x, y):            # x, y: torch tensors [N]; the target [N]
        return x**2 + y**2

A user module registers its own names with these decorators and is imported by `plugins: [module or file.py]`
(workflow config) or `python -m lpa_core --plugins ...` before any name resolves (load_plugins). The built-in
names are declared at the bottom of this file, each with the module that defines it: this module imports no
torch, so the workflow and the aggregation jobs (tables, figures, report) know every name and its order without
importing an implementation; `REGISTRY[name]` imports the implementation on first use. Valid-name lists
everywhere else (CLI, TrainConfig, the workflow's config check, the report's paradigm order and colours, the
benchmarks) are read from here (tests/test_registry.py fails on a restated list).

Also here: `create_model`, every task's one model constructor (one builder signature for every task and plugin),
and `label`, the file-name-safe label of a dataset named by its source (csv:, parquet:, sklearn:, imagefolder:).
"""
import functools
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path


class _Lazy(tuple):
    """(module, attr) of a built-in not imported yet."""


class Registry(Mapping):
    """name -> implementation, in registration order; `meta(name)` holds what was given with it (a model's task)."""

    def __init__(self, kind, key):
        self.kind, self.key, self._items, self._meta, self.homes = kind, key, {}, {}, {}

    def register(self, obj=None, *, name=None, **meta):
        """Decorator: @REG.register, @REG.register(name="x", task="vision"). A name registered twice is an error."""
        def add(o):
            n = name or o.__name__
            if n in self._items:
                raise ValueError(f"{self.key}: '{n}' is already registered as a {self.kind}")
            self._items[n], self._meta[n] = o, meta
            return o
        return add(obj) if obj is not None else add

    def lazy(self, module, *names, attr=None, **meta):
        """Built-in names whose implementation is `module.<name>` (or `module.<attr>[name]`), imported on first use."""
        for n in names:
            self._items[n], self._meta[n], self.homes[n] = _Lazy((module, attr)), meta, module

    def __getitem__(self, name):
        self.check(name)
        obj = self._items[name]
        if isinstance(obj, _Lazy):  # a built-in: import it now
            module, attr = obj
            mod = importlib.import_module(module)
            obj = getattr(mod, attr)[name] if attr else getattr(mod, name)
            self._items[name] = obj
        return obj

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __contains__(self, name):
        return name in self._items

    def meta(self, name):
        self.check(name)
        return self._meta[name]

    def names(self, **meta):
        """Registered names, in order; with meta, those whose metadata match (names(task="vision"))."""
        return [n for n in self._items if all(self._meta[n].get(k) == v for k, v in meta.items())]

    def check(self, name, key=None, valid=None):
        """One-line error naming the key, the bad name and the valid ones."""
        valid = list(self._items) if valid is None else valid
        if name not in valid:
            raise ValueError(f"{key or self.key}: unknown '{name}' (valid: {', '.join(valid)})")


SURFACES = Registry("surface", "datasets")           # f(x, y) -> z on torch tensors [N] (lpa_core.data)
IMAGE_DATASETS = Registry("image dataset", "datasets")  # lpa_core.images.Spec
MODELS = Registry("model", "arch")                  # builder(*, seeds, d_in, d_out, **keys) (create_model); meta task: surfaces, vision, lm
PARADIGMS = Registry("paradigm", "paradigm")        # epoch(ctx, epoch) (lpa_core.paradigms)
TOPOLOGIES = Registry("topology", "topology")       # a Topology class (lpa_core.topology)
REGISTRIES = {"surface": SURFACES, "image_dataset": IMAGE_DATASETS, "model": MODELS, "paradigm": PARADIGMS,
              "topology": TOPOLOGIES}

register_surface = SURFACES.register
register_image_dataset = IMAGE_DATASETS.register
register_model = MODELS.register
register_paradigm = PARADIGMS.register
register_topology = TOPOLOGIES.register


def task_of(arch):
    """'vision', 'lm' or 'surfaces' for a registered model; a path (a save_pretrained directory) is 'lm'."""
    if arch in MODELS:
        return MODELS.meta(arch).get("task", "surfaces")
    return "lm" if is_pretrained(arch) else "surfaces"


def is_pretrained(arch):
    """An arch that names a local directory (a path) rather than a registered model."""
    return arch not in MODELS and (os.sep in arch or arch.startswith(".") or os.path.isdir(arch))


INIT_SEED = 1_000_003  # a run's initialisation stream: torch's RNG at INIT_SEED + seed (the data's streams are others)


def create_model(arch, *, seeds=(0,), d_in, d_out, **keys):
    """Every task's one model constructor (timm's create_model): the builder registered as `arch` (a local
    save_pretrained directory: lpa_core.lm.pretrained), called with one signature for every task and plugin:

        builder(*, seeds, d_in, d_out, **keys) -> a residual stack (lpa_core.models.BlockStack)

      seeds  the runs' seeds: a surface model stacks one copy per seed (ResMLP draws each from its own generator
             at INIT_SEED + seed); a vision or LM model is one run (one seed)
      d_in   one example's input: features (int; surfaces and tabular data), (channels, height, width) (images),
             or the vocabulary size (token ids; LM)
      d_out  outputs per example: targets or classes (int), or the vocabulary size (LM)
      keys   the task's model keys from TrainConfig: topology, tau, normalisation, wiring for every task; width,
             depth, activation (surfaces); head (vision)

    The builder runs under torch's RNG seeded INIT_SEED + seeds[0], in a forked RNG state (nothing else's stream
    moves): a model that draws its initialisation from torch's default generator gets the run's own."""
    import torch

    build = functools.partial(importlib.import_module("lpa_core.lm").pretrained, arch) if is_pretrained(arch) else MODELS[arch]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED + seeds[0])
        return build(seeds=list(seeds), d_in=d_in, d_out=d_out, **keys)


_LOADED = set()
PLUGINS_ENV = "LPA_PLUGINS"  # comma-separated plugins every `python -m lpa_core` imports (the workflow sets it)


def load_plugins(plugins):
    """Import each plugin (a module name on sys.path, or a .py file) once, so that its @register_* run. A plugin
    that fails to import is one ValueError naming it and why."""
    for p in plugins or ():
        if p in _LOADED:
            continue
        try:
            if p.endswith(".py") or os.sep in p:
                path = Path(p)
                if not path.is_file():
                    raise FileNotFoundError(f"no such file '{p}'")
                spec = importlib.util.spec_from_file_location(f"lpa_plugin_{path.stem}", path)
                mod = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = mod
                spec.loader.exec_module(mod)
            else:
                importlib.import_module(p)
        except Exception as e:  # noqa: BLE001  any failure is the plugin's, reported in one line
            raise ValueError(f"plugins: cannot import '{p}': {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                             f"(a plugin is a module name on PYTHONPATH or a path to a .py file)") from None
        _LOADED.add(p)


def label(name):
    """A file- and wildcard-safe label of a dataset name, for run folders and figure file names: a registered name
    as it is; a name by source (csv:, parquet:, sklearn:, imagefolder:), its prefix and the stem of its file or
    folder: csv:data/house.csv:target=price -> csv_house, imagefolder:photos/pets:size=64 -> imagefolder_pets."""
    if ":" not in name:
        return name
    prefix, _, rest = name.partition(":")
    path = Path(rest.split(":")[0])
    stem = (path if path.name not in ("", ".", "..") else path.resolve()).stem
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]+', '_', stem)}"


def check_source(name, kind):
    """A dataset name by source for a `kind` (surface: csv:, parquet:, sklearn:; image_dataset: imagefolder:):
    checked now (the file or folder is there and usable), a one-line ValueError otherwise."""
    if kind == "image_dataset":
        if not name.startswith("imagefolder:"):
            raise ValueError(f"datasets: unknown source '{name.partition(':')[0]}:' in '{name}' (valid: imagefolder:PATH, "
                             f"or a registered image dataset: {', '.join(IMAGE_DATASETS)})")
        from lpa_core.images import parse_folder

        parse_folder(name)
    else:
        from lpa_core import tabular

        tabular.check(name)


def check_names(value, schema, root=None, where="config"):
    """Every config value whose JSON-schema node says `x-registry: KIND` (and `x-task`, for models) is a registered
    name of that kind: the workflow's check of a config (after its plugins are loaded), one ValueError naming the key."""
    root = root or schema
    while "$ref" in schema:  # "#/$defs/name", its siblings on top
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    if schema.get("x-registry") in ("surface", "image_dataset") and isinstance(value, str) and ":" in value:
        try:  # csv:, parquet:, sklearn:, imagefolder:
            check_source(value, schema["x-registry"])
        except ValueError as e:
            raise ValueError(f"{where}: {str(e).partition(': ')[2]}") from None
    elif "x-registry" in schema and isinstance(value, str):
        reg = REGISTRIES[schema["x-registry"]]
        reg.check(value, key=where, valid=reg.names(task=schema["x-task"]) if "x-task" in schema else None)
    if isinstance(value, dict):
        for k, v in value.items():
            if "propertyNames" in schema:
                check_names(k, schema["propertyNames"], root, f"{where}.{k}")
            sub = schema.get("properties", {}).get(k, schema.get("additionalProperties"))
            if isinstance(sub, dict):
                check_names(v, sub, root, f"{where}.{k}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for v in value:
            check_names(v, schema["items"], root, where)


# --- the built-in names (their order is the tables' and figures' order) ------------------------------------------
SURFACES.lazy("lpa_core.data", "high_freq", "local_bump", "saddle", "nonint_powers", "log_singularity", "radial_decay",
              "hf_stripe", attr="SURFACES")
IMAGE_DATASETS.lazy("lpa_core.images", "fashion_mnist", "cifar10", "cifar100", "imagenet", attr="DATASETS")
MODELS.lazy("lpa_core.models", "resmlp", attr="ARCHS", task="surfaces")
MODELS.lazy("lpa_core.vision_models", "resnet18", "resnet34", "vit12", "vit24", "resnet18_w16", "resnet10_w16",
            "vit6_d64", attr="VISION_ARCHS", task="vision")
MODELS.lazy("lpa_core.lm", "lm_tiny", "qwen2_tiny", "llama_60m", "llama_130m", "llama_350m", "qwen2_small",
            attr="LM_MODELS", task="lm")
PARADIGMS.lazy("lpa_core.paradigms", "simultaneous", "sequential", "lpa", "adaptive_lpa", "lpa_grouped",
               "deep_supervision", "layerskip", "layerdrop")
TOPOLOGIES.lazy("lpa_core.topology", "cascade", "ancre", "all_fixed", "gains", attr="TOPOLOGIES")
