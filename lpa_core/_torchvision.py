"""`import torchvision` that also works where torchvision's compiled ops cannot load.

PyPI's torchvision 0.28.0 wheel is built against CUDA torch; beside torch 2.13.0+cpu (the wheel these machines
carry) its `_C` library fails to load, which torchvision tolerates, except that torchvision/_meta_registrations.py
then registers fake kernels for `torchvision::nms` and `qnms` without checking, and `import torchvision` (and so
`import timm`, and transformers' model modules, which import torchvision) raises "operator torchvision::nms does
not exist". Declaring those two op schemas first lets the
import go through. lpa-bench uses only torchvision's pure-Python parts (models.resnet's BasicBlock, the dataset
readers and downloaders), never its compiled ops. With a matching torchvision nothing here runs.
"""
import sys

import torch

_LIB = None  # keeps the schema fragment alive


def import_torchvision():
    global _LIB
    try:
        import torchvision
    except RuntimeError as e:
        if "torchvision::" not in str(e) or _LIB is not None:
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]  # the half-imported package
        _LIB = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            _LIB.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision
    return torchvision


def import_timm():
    import_torchvision()  # timm imports torchvision
    import timm

    return timm


def import_transformers():
    import_torchvision()  # transformers' model modules import torchvision when it is installed
    import transformers

    return transformers
