"""Command-line flags derived from the typed option objects, so defaults and help live once.

Every field of an options dataclass becomes ``--field-name`` with the
field's type, default and help text (the default is shown in the help).
Booleans get ``--x/--no-x``, lists take several values.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

from model.detector import Detector
from model.options import DetectorOptions, ScalePolicy
from model.weights import DEFAULT_MODEL

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unwrap_optional(kind: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return kind


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    options: type,
    *,
    only: tuple[str, ...] | None = None,
    skip: tuple[str, ...] = (),
    defaults: Any = None,
) -> None:
    """Add a flag per field of the dataclass ``options``.

    ``defaults`` is an instance whose values replace the class defaults (a
    preset such as :data:`model.options.SERVING`).
    """
    hints = typing.get_type_hints(options)
    for field in dataclasses.fields(options):
        if (only is not None and field.name not in only) or field.name in skip:
            continue
        default = getattr(defaults, field.name) if defaults is not None else _default(field)
        kind = _unwrap_optional(hints[field.name])
        text = field.metadata.get("help", "")
        keywords: dict[str, Any] = {"dest": field.name}
        if default is dataclasses.MISSING:
            keywords["required"] = True
        else:
            keywords["default"] = default
            shown = field.metadata.get("unset") if default is None else default
            if shown is not None:
                text += f" (default: {shown})"
        if "choices" in field.metadata:
            keywords["choices"] = field.metadata["choices"]
        if kind is bool:
            keywords["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is list:
            (keywords["type"],) = typing.get_args(kind)
            keywords["nargs"] = "+"
        else:
            keywords["type"] = kind
        parser.add_argument(_flag(field.name), help=text, **keywords)


def options_from(options: type[T], args: argparse.Namespace, **values: Any) -> T:
    """Build the dataclass from parsed flags (fields without a flag keep their default)."""
    for field in dataclasses.fields(options):
        if field.name not in values and hasattr(args, field.name):
            values[field.name] = getattr(args, field.name)
    return options(**values)


def add_detector_options(parser: argparse.ArgumentParser, *, weights: bool = True) -> None:
    """The flags of every command that builds a Detector: checkpoint, backend, device, sizing
    and the test protocol."""
    if weights:
        parser.add_argument(
            "--weights",
            default=DEFAULT_MODEL,
            help="a released .pth, a project .safetensors or a registry name "
            f"(default: {DEFAULT_MODEL})",
        )
    add_options(parser, DetectorOptions, only=("backend", "device"))
    add_options(parser, ScalePolicy)
    parser.add_argument(
        "--protocol",
        choices=("single", "paper"),
        default="single",
        help="single scale, or the paper's multi-scale + flip test (default: single)",
    )


def build_detector(args: argparse.Namespace, weights: Any = None, **overrides: Any) -> Detector:
    """The Detector that :func:`add_detector_options`' flags describe."""
    options = options_from(DetectorOptions, args, **overrides)
    return Detector(weights or args.weights, **dataclasses.asdict(options), runtime=args.runtime)
