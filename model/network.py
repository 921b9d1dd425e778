"""The EXTD network: one small stage reused to build six detection scales.

The module knows nothing about files, images or anchors: it maps a
mean-subtracted RGB batch to per-anchor box offsets and class logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.variants import NUM_SOURCES, STEM_CHANNELS, Activation, Variant

LEAKY_SLOPE = 0.25  # equal to PReLU's initial slope


def make_activation(kind: Activation) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(num_parameters=1, init=LEAKY_SLOPE)
    if kind == "leaky":
        return nn.LeakyReLU(LEAKY_SLOPE)
    return nn.ReLU()


class ReusedBatchNorm(nn.BatchNorm2d):
    """Batch norm of the reused stage: one affine transform, running statistics per use.

    The stage runs once per scale, and each scale's activations have their own
    statistics. Training normalises each use by its batch statistics, so
    evaluation must use that use's running statistics: one shared set (a blend
    of six scales) makes a network trained from scratch useless in eval mode.
    The released checkpoints hold one set, which serves every use.
    """

    def __init__(self, channels: int, uses: int) -> None:
        super().__init__(channels)
        self.register_buffer("running_mean", torch.zeros(uses, channels))
        self.register_buffer("running_var", torch.ones(uses, channels))
        self.use = 0

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(
            x,
            self.running_mean[self.use],
            self.running_var[self.use],
            self.weight,
            self.bias,
            self.training,
            self.momentum,
            self.eps,
        )


class ConvBNAct(nn.Module):
    """Convolution, batch norm and an optional activation."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        *,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
        activation: nn.Module | None = None,
        norm_uses: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=bias)
        self.bn = ReusedBatchNorm(c_out, norm_uses) if norm_uses > 1 else nn.BatchNorm2d(c_out)
        self.act = activation if activation is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1, depthwise 3x3 (with bias), project 1x1."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        expansion: int,
        stride: int,
        activation: Activation,
        activation_after_projection: bool,
        norm_uses: int = 1,
    ) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.expand = (
            ConvBNAct(c_in, hidden, 1, activation=make_activation(activation), norm_uses=norm_uses)
            if expansion != 1
            else nn.Identity()
        )
        self.depthwise = ConvBNAct(
            hidden,
            hidden,
            3,
            stride=stride,
            groups=hidden,
            bias=True,
            activation=make_activation(activation),
            norm_uses=norm_uses,
        )
        self.project = ConvBNAct(
            hidden,
            c_out,
            1,
            activation=make_activation(activation) if activation_after_projection else None,
            norm_uses=norm_uses,
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class TopDownBlock(nn.Module):
    """FPN lateral block: depthwise 3x3, pointwise 1x1, BN, ReLU (for every variant)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()

    def forward(self, coarse: Tensor, skip: Tensor) -> Tensor:
        up = self.upsample(coarse, skip)
        return self.act(self.bn(self.pointwise(self.depthwise(up)))) + skip

    @staticmethod
    def upsample(coarse: Tensor, skip: Tensor) -> Tensor:
        """Bilinear to ``skip``'s exact size, as the release does (not always a 2x grid)."""
        return F.interpolate(coarse, size=skip.shape[-2:], mode="bilinear", align_corners=False)


class EXTD(nn.Module):
    """Extremely Tiny Face Detector (Yoo, Han, Yun 2019) for any paper variant.

    ``forward`` returns ``(offsets, logits)``: ``(N, A, 4)`` SSD box offsets
    and ``(N, A, 2)`` background/face logits for the anchors of
    :func:`model.anchors.anchor_grid`, finest map first, each map in (y, x)
    order. The finest map's three background logits are already max-ed out.
    """

    def __init__(self, variant: Variant) -> None:
        super().__init__()
        self.variant = variant
        width, act = variant.width, variant.activation
        self.stem = ConvBNAct(3, STEM_CHANNELS, 3, stride=2, activation=make_activation(act))
        self.entry = InvertedResidual(
            STEM_CHANNELS,
            width,
            expansion=1,
            stride=1,
            activation=act,
            activation_after_projection=variant.activation_after_projection,
        )
        self.stage = nn.Sequential(
            *(
                InvertedResidual(
                    width,
                    width,
                    expansion=block.expansion,
                    stride=block.stride,
                    activation=act,
                    activation_after_projection=variant.activation_after_projection,
                    norm_uses=NUM_SOURCES,
                )
                for block in variant.stage
            )
        )
        self._stage_norms = tuple(m for m in self.stage.modules() if isinstance(m, ReusedBatchNorm))
        self.top_down = nn.ModuleList(
            TopDownBlock(width) for _ in range(NUM_SOURCES - 1 if variant.head == "fpn" else 0)
        )
        self.box_heads = nn.ModuleList(
            nn.Conv2d(width, 4, 3, padding=1) for _ in range(NUM_SOURCES)
        )
        self.class_heads = nn.ModuleList(
            nn.Conv2d(width, 4 if k == 0 else 2, 3, padding=1) for k in range(NUM_SOURCES)
        )

    def backbone(self, x: Tensor) -> list[Tensor]:
        """The six maps of the reused stage, finest (stride 4) first."""
        maps = [self.entry(self.stem(x))]
        for use in range(NUM_SOURCES):
            for norm in self._stage_norms:
                norm.use = use
            maps.append(self.stage(maps[-1]))
        return maps[1:]

    def detection_head(self, *maps: Tensor) -> tuple[Tensor, Tensor]:
        """Top-down merge (FPN head) and the box and class convolutions."""
        sources = list(maps)
        if len(self.top_down):
            merged = [maps[-1]]
            for block, skip in zip(self.top_down, reversed(maps[:-1]), strict=True):
                merged.append(block(merged[-1], skip))
            sources = [*merged[:0:-1], maps[-1]]
        n = maps[0].shape[0]
        offsets, logits = [], []
        for k, source in enumerate(sources):
            offsets.append(self.box_heads[k](source).permute(0, 2, 3, 1).reshape(n, -1, 4))
            scores = self.class_heads[k](source)
            if k == 0:
                background = scores[:, :3].amax(dim=1, keepdim=True)
                scores = torch.cat((background, scores[:, 3:]), dim=1)
            logits.append(scores.permute(0, 2, 3, 1).reshape(n, -1, 2))
        return torch.cat(offsets, dim=1), torch.cat(logits, dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.detection_head(*self.backbone(x))


def count_parameters(network: nn.Module) -> int:
    """Trainable parameters, the number the paper reports."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)
