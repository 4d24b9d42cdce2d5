"""Built-in architectures, adapted to small inputs, with their aMINT tap points.

Stem changes for small inputs (``img_size <= SMALL_INPUT_MAX``, i.e. 28..64 px): the ImageNet
stems downsample 4x (ResNet, DenseNet) or 2x-4x (MobileNetV2, Xception) before the first stage,
which would shrink a 28x28 image to 7x7 before any block.  Here the stem as a whole downsamples
about 2x, keeping CPU cost modest.  Larger inputs keep the original stems (only the input channels
change).  Every change is commented where it is made.  No pretrained weights, ever.

Tap points follow the rules of :mod:`activemint.models.registry`: stage/block outputs of the
top-level forward chain, listed in forward order, two per setup.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm must never try to reach the Hugging Face hub

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_arch
from .small_cnn import SmallCNN

#: Inputs up to this size (px) get the small-input stems.
SMALL_INPUT_MAX = 64


def _small(img_size: int) -> bool:
    return img_size <= SMALL_INPUT_MAX


def _init_conv(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


# --------------------------------------------------------------------------------------------
# small_cnn
# --------------------------------------------------------------------------------------------


@register_arch(
    "small_cnn",
    taps={
        "entry": ("block1", "block2"),
        "middle": ("block3", "block4"),
        "output": ("block5", "block6"),
    },
    description="fast 6-block CNN (32-64-128 ch), thousands of img/s on CPU at 28 px",
)
def small_cnn(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    return SmallCNN(in_chans=in_chans, num_classes=num_classes)


@register_arch(
    "small_cnn_half",
    taps={
        "entry": ("block1", "block2"),
        "middle": ("block3", "block4"),
        "output": ("block5", "block6"),
    },
    description="small_cnn at half width (16-32-64 ch): the smaller student of model-edit distillation",
)
def small_cnn_half(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    return SmallCNN(in_chans=in_chans, num_classes=num_classes, widths=(16, 32, 64))


# --------------------------------------------------------------------------------------------
# torchvision: MobileNetV2, ResNet-50/101, DenseNet-121
# --------------------------------------------------------------------------------------------


@register_arch(
    "mobilenet_v2",
    taps={
        # features.1 = the 16-ch stage (one block), features.3 = end of the 24-ch stage
        "entry": ("features.1", "features.3"),
        # ends of the 32-ch and 64-ch stages
        "middle": ("features.6", "features.10"),
        # last inverted residual (320 ch) and the final 1x1 conv (1280 ch)
        "output": ("features.17", "features.18"),
    },
    description="torchvision MobileNetV2 (stem stride 1 for small inputs)",
)
def mobilenet_v2(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

    model = tv_mobilenet_v2(weights=None, num_classes=num_classes)
    old = model.features[0][0]
    # Small inputs: first conv stride 2 -> 1 (stem downsampling 2x -> 1x; features.2 then halves
    # the map, so a 28 px input reaches the 24-ch stage at 14x14 and the last stage at 2x2).
    stride = 1 if _small(img_size) else 2
    model.features[0][0] = _init_conv(
        nn.Conv2d(in_chans, old.out_channels, 3, stride=stride, padding=1, bias=False)
    )
    return model


def _torchvision_resnet(depth: int, in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    from torchvision.models import resnet50, resnet101

    model = {50: resnet50, 101: resnet101}[depth](weights=None, num_classes=num_classes)
    if _small(img_size):
        # Small inputs: conv1 7x7 stride 2 -> 3x3 stride 1; the 3x3/2 maxpool is kept, so the stem
        # downsamples 2x instead of 4x (28 px: layer1 at 14x14, layer4 at 2x2).
        model.conv1 = _init_conv(nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False))
    elif in_chans != 3:
        model.conv1 = _init_conv(nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False))
    return model


# ResNet taps: layer1.0 (first bottleneck) and layer1 (end of stage 1); stages 2 and 3; the
# second-to-last bottleneck and the end of stage 4.  Each tapped block output is the input of the
# next block only (the skip connection lives inside the next block and does not modify it).
_RESNET_TAPS = {
    "entry": ("layer1.0", "layer1"),
    "middle": ("layer2", "layer3"),
    "output": ("layer4.1", "layer4"),
}


@register_arch("resnet50", taps=_RESNET_TAPS, description="torchvision ResNet-50 (3x3/1 stem for small inputs)")
def resnet50(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    return _torchvision_resnet(50, in_chans, num_classes, img_size)


@register_arch("resnet101", taps=_RESNET_TAPS, description="torchvision ResNet-101 (3x3/1 stem for small inputs)")
def resnet101(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    return _torchvision_resnet(101, in_chans, num_classes, img_size)


def _densenet_cls():
    from torchvision.models.densenet import DenseNet

    class TapSafeDenseNet(DenseNet):
        """torchvision DenseNet whose forward does not ReLU ``features.norm5`` in place.

        The stock forward calls ``F.relu(features, inplace=True)``, which would overwrite the
        tapped ``features.norm5`` output (and break autograd through the MINT head).
        """

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.features(x)
            out = F.relu(features)  # not in place: features.norm5 is a tap point
            out = F.adaptive_avg_pool2d(out, (1, 1))
            out = torch.flatten(out, 1)
            return self.classifier(out)

    return TapSafeDenseNet


@register_arch(
    "densenet121",
    taps={
        "entry": ("features.denseblock1", "features.transition1"),
        "middle": ("features.transition2", "features.denseblock3"),
        "output": ("features.denseblock4", "features.norm5"),
    },
    description="torchvision DenseNet-121 (3x3/1 conv0 for small inputs)",
)
def densenet121(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    # Same configuration as torchvision.models.densenet121 (growth 32, blocks 6-12-24-16).
    model = _densenet_cls()(32, (6, 12, 24, 16), 64, num_classes=num_classes)
    if _small(img_size):
        # Small inputs: conv0 7x7 stride 2 -> 3x3 stride 1; pool0 (3x3/2) is kept, so the stem
        # downsamples 2x instead of 4x (28 px: denseblock1 at 14x14, denseblock4 at 1x1).
        model.features.conv0 = _init_conv(nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False))
    elif in_chans != 3:
        model.features.conv0 = _init_conv(nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False))
    return model


# --------------------------------------------------------------------------------------------
# timm: Xception, ViT
# --------------------------------------------------------------------------------------------


@register_arch(
    "xception",
    taps={
        # first two entry-flow blocks
        "entry": ("block1", "block2"),
        # the middle of the 8-block middle flow (blocks 4..11)
        "middle": ("block7", "block8"),
        # last residual block (exit flow) and the final 2048-ch feature map
        "output": ("block12", "act4"),
    },
    description="timm legacy_xception (Chollet's Xception; conv1 stride 1 for small inputs)",
)
def xception(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    import timm

    model = timm.create_model("legacy_xception", pretrained=False, num_classes=num_classes, in_chans=in_chans)
    if _small(img_size):
        # Small inputs: conv1 3x3 stride 2 -> stride 1 (padding 0 kept; with the unpadded conv2 the
        # stem now only trims borders: 28 px -> 24x24 into block1, 12x12 after it, 2x2 at block12).
        model.conv1 = _init_conv(nn.Conv2d(in_chans, 32, 3, stride=1, padding=0, bias=False))
    return model


@register_arch(
    "vit",
    taps={
        "entry": ("blocks.0", "blocks.1"),
        "middle": ("blocks.5", "blocks.6"),
        "output": ("blocks.10", "blocks.11"),
    },
    description="timm VisionTransformer: patch 4, dim 64, depth 12, 8 heads (as in the aMINT paper)",
)
def vit(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    # Taps are transformer blocks: outputs are (B, 1 + (img_size // 4) ** 2, 64) token maps.
    return VisionTransformer(
        img_size=img_size,
        patch_size=4,
        in_chans=in_chans,
        num_classes=num_classes,
        embed_dim=64,
        depth=12,
        num_heads=8,
    )
