"""The EXTD paper variants: one frozen config object per network layout.

A variant is named ``{head}-{width}-{activation}``, e.g. ``fpn-64-prelu``;
the three released checkpoints are the ``fpn-*-prelu`` ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Literal

from model.errors import OptionsError

Head = Literal["fpn", "ssd"]
Activation = Literal["prelu", "leaky", "relu"]

HEADS: tuple[Head, ...] = ("fpn", "ssd")
WIDTHS: tuple[int, ...] = (32, 48, 64)
ACTIVATIONS: tuple[Activation, ...] = ("prelu", "leaky", "relu")

STEM_CHANNELS = 64
NUM_SOURCES = 6


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block of the reused stage: expansion and stride."""

    expansion: int
    stride: int


# The stage that is run five times; its last block halves the resolution.
_STAGES: dict[int, tuple[BlockSpec, ...]] = {
    64: (BlockSpec(2, 1), BlockSpec(2, 1), BlockSpec(4, 1), BlockSpec(4, 2)),
    48: (BlockSpec(2, 1), BlockSpec(2, 1), BlockSpec(4, 1), BlockSpec(4, 2)),
    32: (
        BlockSpec(2, 1),
        BlockSpec(2, 1),
        BlockSpec(4, 1),
        BlockSpec(4, 1),
        BlockSpec(2, 1),
        BlockSpec(2, 2),
    ),
}


@dataclass(frozen=True)
class Variant:
    """Head type, feature width and activation of one EXTD network."""

    head: Head = "fpn"
    width: int = 64
    activation: Activation = "prelu"

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise OptionsError(f"unknown head {self.head!r}; expected one of {HEADS}")
        if self.width not in WIDTHS:
            raise OptionsError(f"unknown width {self.width!r}; expected one of {WIDTHS}")
        if self.activation not in ACTIVATIONS:
            raise OptionsError(
                f"unknown activation {self.activation!r}; expected one of {ACTIVATIONS}"
            )

    @property
    def name(self) -> str:
        return f"{self.head}-{self.width}-{self.activation}"

    @property
    def stage(self) -> tuple[BlockSpec, ...]:
        return _STAGES[self.width]

    @property
    def activation_after_projection(self) -> bool:
        """Width 32 ends every inverted residual with one more activation."""
        return self.width == 32

    @classmethod
    def parse(cls, name: str) -> Variant:
        """Build a variant from its canonical name, e.g. ``fpn-64-prelu``."""
        parts = name.strip().lower().split("-")
        if len(parts) != 3 or not parts[1].isdigit():
            raise OptionsError(
                f"bad variant name {name!r}; expected '<head>-<width>-<activation>', "
                "e.g. 'fpn-64-prelu'"
            )
        return cls(head=parts[0], width=int(parts[1]), activation=parts[2])  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.name


ALL_VARIANTS: tuple[Variant, ...] = tuple(
    Variant(head, width, activation)
    for head, width, activation in product(HEADS, WIDTHS, ACTIVATIONS)
)
