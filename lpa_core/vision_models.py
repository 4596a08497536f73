"""Vision models in the residual-stack interface, built from well-kept libraries.

Every model is a stem, residual blocks 1..L and ONE shared head used at every depth, with the same small API as
the surface models (lpa_core.models): `forward(x, depth=k)` predicts with the stem, the first k blocks and the
head; `features(x, depth)` hands back the representations after blocks 1..depth; `params(depth, first)` lists
what a step at that depth may update (stem, blocks first+1..depth, head); `depth` = L; `head.pre_logits(h)` is
what the head's linear layer sees (the per-depth embedding). No run axis: n_runs = 1, one model per job.

  ResNet (torchvision.models.resnet.BasicBlock, CIFAR variant: 3x3 stride-1 stem, no max-pool; the ImageNet stem,
  7x7 stride 2 + max-pool, for inputs larger than 64 px). A block is one BasicBlock with its own shortcut (a 1x1
  conv + BN where the width or resolution changes, as torchvision's _make_layer builds it), so ResNet-18 has 8
  blocks and ResNet-34 16 (the paper's second version counts "layers" so). Initialisation as torchvision's ResNet.
  The shared head at a block of a narrower stage (heads, cfg.head):
    pad       global average pool, zero-pad the channels to the widest stage, one linear layer: the paper's
              zero-padding argument (Sec 4.2: narrower layers are wider ones with zero weights). Depth-k logits
              use the first C_k columns of the one weight matrix.
    pad_norm  the same after a parameter-free LayerNorm of the pooled C_k channels. Our alternative: block
              outputs grow in scale along a stage and jump at stage changes, and one linear layer has to serve
              them all; normalising first puts every depth on one scale, as the final LayerNorm does for the ViT's
              shared head. Still one head and no extra parameters.
  ViT (timm.models.vision_transformer.VisionTransformer: class token, learned position embedding, pre-norm
  blocks, timm's initialisation). Stem = patch embedding + class token + position embedding; blocks = the
  transformer blocks; head = final LayerNorm + class-token pooling + linear. Patch 4 on 32 x 32 inputs (8 x 8 =
  64 patches), patch 16 on 224 x 224 (ImageNet). Fashion-MNIST's 28 x 28 images are zero-padded to 32 x 32 by
  the loader (lpa_core.images): the same models, patch grid and parameter counts for all three small datasets.

Named builders (timm style) with the one signature of every model, `builder(*, seeds, d_in, d_out, **keys)`: d_in
= (channels, height, width) of the (square) images, d_out = classes, keys = head, topology, tau, normalisation,
wiring; built through lpa_core.registry.create_model (an unknown name is a one-line error listing the valid
ones). torchvision and timm are imported only when a model is built.
"""

import torch
import torch.nn.functional as F
from torch import nn

from lpa_core.models import BlockStack
from lpa_core.topology import Cascade

HEADS = ("pad", "pad_norm")
VISION_ARCHS = {}  # the built-in definitions; their names: lpa_core.registry


def register(fn):
    VISION_ARCHS[fn.__name__] = fn
    return fn


def image_keys(d_in, d_out):
    """The stacks' image keys (in_chans, img_size, num_classes) of create_model's d_in (C, H, W) and d_out."""
    c, h, w = d_in
    if h != w:
        raise ValueError(f"d_in: the vision models take square images, got {h} x {w}")
    return dict(in_chans=c, img_size=h, num_classes=d_out)


class VisionStack(BlockStack):
    """stem -> blocks[:depth] -> head: subclasses set the three modules, then call `connect`; bf16 autocast on
    CUDA comes with BlockStack (`amp`, set by the vision task)."""


class Truncated(nn.Module):
    """The stem, the first `depth` blocks and the shared head of a stack under a learned topology."""

    def __init__(self, model, depth):
        super().__init__()
        self.model, self.depth = model, depth

    def forward(self, x):
        return self.model(x, self.depth)


def truncate(model, depth):
    """A standalone model of the stem, the first `depth` blocks and the shared head (a deployable "one of N"
    model of Sec 5.4), sharing the weights: truncate(m, k)(x) == m(x, depth=k). Under cascade a plain
    nn.Sequential of the library's modules."""
    if isinstance(model.topology, Cascade):
        return nn.Sequential(model.stem, *model.blocks[:depth], model.head)
    return Truncated(model, depth)


# --- ResNet -------------------------------------------------------------------------------------------------------

class PadHead(nn.Module):
    """Average pool -> [parameter-free LayerNorm over the pooled channels] -> zero-pad to `width` -> linear."""

    def __init__(self, width, num_classes, norm=False):
        super().__init__()
        self.width, self.norm = width, norm
        self.fc = nn.Linear(width, num_classes)

    def pre_logits(self, h):
        z = h.mean(dim=(2, 3))
        if self.norm:
            z = F.layer_norm(z, z.shape[-1:])
        return F.pad(z, (0, self.width - z.shape[1]))

    def forward(self, h):
        return self.fc(self.pre_logits(h))


class ResNetStack(VisionStack):
    """torchvision's BasicBlock ResNet taken apart: stem, the BasicBlocks in order, the shared PadHead."""

    def __init__(self, layers, widths=(64, 128, 256, 512), num_classes=10, in_chans=3, img_size=32, head="pad",
                 topology="cascade", tau=0.1, normalisation="ingoing", wiring="replace"):
        super().__init__()
        from lpa_core._torchvision import import_torchvision

        resnet = import_torchvision().models.resnet
        w0 = widths[0]
        if img_size > 64:  # ImageNet-size inputs: torchvision's own stem
            self.stem = nn.Sequential(nn.Conv2d(in_chans, w0, 7, 2, 3, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, 2, 1))
        else:  # CIFAR variant (He et al. 2016, Sec 4.2): 3x3 stride 1, no max-pool
            self.stem = nn.Sequential(nn.Conv2d(in_chans, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True))
        blocks, inplanes = [], w0
        for stage, (n, planes) in enumerate(zip(layers, widths)):  # torchvision's ResNet._make_layer
            for b in range(n):
                stride = 2 if stage > 0 and b == 0 else 1
                down = None
                if stride != 1 or inplanes != planes:
                    down = nn.Sequential(resnet.conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
                blocks.append(resnet.BasicBlock(inplanes, planes, stride, down))
                inplanes = planes
        self.blocks = nn.ModuleList(blocks)
        self.head = PadHead(max(widths), num_classes, norm=head == "pad_norm")
        for m in self.modules():  # torchvision's ResNet initialisation (zero_init_residual=False)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        self.connect(topology, tau=tau, normalisation=normalisation, wiring=wiring)

    def project(self, h, j, ref):
        """h in the shape of block j's output (its input is ref), parameter-free: average-pool to its resolution,
        zero-pad to its channels (the paper's zero-padding argument, Sec 4.2, as for the shared head)."""
        block = self.blocks[j - 1]
        size = -(-ref.shape[-1] // block.stride)
        if h.shape[-1] != size:
            h = F.avg_pool2d(h, h.shape[-1] // size)
        pad = block.conv2.out_channels - h.shape[1]
        return F.pad(h, (0, 0, 0, 0, 0, pad)) if pad else h  # h itself where nothing changes: no copy

    def unproject(self, g, j, ref, shape):
        """project's transpose: drop the padded channels, spread each pooled value evenly over its k x k window."""
        g, k = g[:, :shape[1]], shape[-1] // g.shape[-1]
        return F.interpolate(g, scale_factor=k, mode="nearest") / (k * k) if k > 1 else g.contiguous()


@register
def resnet18(*, seeds, d_in, d_out, **kw):
    """ResNet-18, CIFAR variant: 8 BasicBlocks (2, 2, 2, 2), widths 64-512; 11.17M parameters at 10 classes."""
    return ResNetStack((2, 2, 2, 2), **image_keys(d_in, d_out), **kw)


@register
def resnet34(*, seeds, d_in, d_out, **kw):
    """ResNet-34, CIFAR variant: 16 BasicBlocks (3, 4, 6, 3), widths 64-512; 21.28M parameters at 10 classes."""
    return ResNetStack((3, 4, 6, 3), **image_keys(d_in, d_out), **kw)


@register
def resnet18_w16(*, seeds, d_in, d_out, **kw):
    """Quick-slice ResNet-18: the same 8 blocks at a quarter of the width (16-128): 0.70M parameters."""
    return ResNetStack((2, 2, 2, 2), widths=(16, 32, 64, 128), **image_keys(d_in, d_out), **kw)


@register
def resnet10_w16(*, seeds, d_in, d_out, **kw):
    """Smallest ResNet: one block per stage (4 blocks), widths 16-128: 0.31M parameters (tests, smoke runs)."""
    return ResNetStack((1, 1, 1, 1), widths=(16, 32, 64, 128), **image_keys(d_in, d_out), **kw)


# --- ViT ----------------------------------------------------------------------------------------------------------

class ViTStem(nn.Module):
    """timm's patch embedding, class token and position embedding (VisionTransformer._pos_embed, fixed size)."""

    def __init__(self, vit):
        super().__init__()
        self.patch_embed, self.cls_token, self.pos_embed = vit.patch_embed, vit.cls_token, vit.pos_embed
        self.pos_drop, self.patch_drop, self.norm_pre = vit.pos_drop, vit.patch_drop, vit.norm_pre

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm_pre(self.patch_drop(self.pos_drop(x)))


class ViTHead(nn.Module):
    """timm's final norm, pooling (class token), fc_norm, head dropout and classifier (forward_head)."""

    def __init__(self, vit):
        super().__init__()
        from timm.layers import global_pool_nlc

        self._pool, self.pool_type, self.n_prefix = global_pool_nlc, vit.global_pool, vit.num_prefix_tokens
        self.norm, self.fc_norm, self.head_drop, self.fc = vit.norm, vit.fc_norm, vit.head_drop, vit.head

    def pre_logits(self, h):
        return self.fc_norm(self._pool(self.norm(h), pool_type=self.pool_type, num_prefix_tokens=self.n_prefix))

    def forward(self, h):
        return self.fc(self.head_drop(self.pre_logits(h)))


class ViTStack(VisionStack):
    """timm's VisionTransformer taken apart: stem, its transformer blocks, the shared head."""

    def __init__(self, embed_dim, depth, num_heads, mlp_ratio=4.0, num_classes=10, in_chans=3, img_size=32, head="pad",
                 topology="cascade", tau=0.1, normalisation="ingoing", wiring="replace"):
        super().__init__()
        if head != "pad":
            raise ValueError(f"head: '{head}' is for ResNets (valid for a ViT: pad)")
        from lpa_core._torchvision import import_timm

        vit = self.make_timm(import_timm(), embed_dim, depth, num_heads, mlp_ratio, num_classes, in_chans, img_size)
        self.stem, self.blocks, self.head = ViTStem(vit), vit.blocks, ViTHead(vit)
        self.connect(topology, tau=tau, normalisation=normalisation, wiring=wiring)

    @staticmethod
    def make_timm(timm, embed_dim, depth, num_heads, mlp_ratio, num_classes, in_chans, img_size):
        return timm.models.vision_transformer.VisionTransformer(
            img_size=img_size, patch_size=4 if img_size <= 64 else 16, in_chans=in_chans, num_classes=num_classes,
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, class_token=True,
            global_pool="token")


@register
def vit12(*, seeds, d_in, d_out, **kw):
    """ViT-12 (ViT-Tiny widths): 12 blocks, dim 192, 3 heads, MLP 768, patch 4: 5.36M parameters at 10 classes."""
    return ViTStack(192, 12, 3, **image_keys(d_in, d_out), **kw)


@register
def vit24(*, seeds, d_in, d_out, **kw):
    """ViT-24: 24 such blocks: 10.70M parameters at 10 classes."""
    return ViTStack(192, 24, 3, **image_keys(d_in, d_out), **kw)


@register
def vit6_d64(*, seeds, d_in, d_out, **kw):
    """Quick-slice ViT: 6 blocks, dim 64, 2 heads, MLP 256: 0.31M parameters."""
    return ViTStack(64, 6, 2, **image_keys(d_in, d_out), **kw)
