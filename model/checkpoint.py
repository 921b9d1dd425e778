"""Checkpoints: the project's safetensors format and the importer of the released ``.pth`` files.

A project checkpoint is a safetensors file whose header metadata holds the
variant, where the weights came from, free-form training information and a
content hash of the tensors, checked on every load. The release's key names
appear only in :func:`release_key_map`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file
from torch import Tensor, nn

from model.errors import CheckpointError
from model.files import atomic_path
from model.network import EXTD, count_parameters
from model.variants import Variant

FORMAT = "extd-checkpoint/1"
PROJECT_SUFFIX = ".safetensors"
RELEASE_SUFFIXES = (".pth", ".pt")


@dataclass
class Checkpoint:
    """Weights of one EXTD network plus what is known about them."""

    variant: Variant
    state_dict: dict[str, Tensor]
    source: str = ""
    training: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def sha256(self) -> str:
        """The content hash, computed once: a checkpoint's tensors are not changed in place."""
        return content_hash(self.state_dict)

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.build())

    def build(self) -> EXTD:
        """The network with these weights, in eval mode."""
        network = EXTD(self.variant)
        check_keys(self.state_dict, network.state_dict(), what=f"checkpoint for {self.variant}")
        network.load_state_dict(self.state_dict, strict=True)
        return network.eval()

    @classmethod
    def from_network(
        cls, network: EXTD, *, source: str = "", training: dict[str, Any] | None = None
    ) -> Checkpoint:
        state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
        return cls(network.variant, state, source=source, training=training or {})


def content_hash(state_dict: Mapping[str, Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_keys(found: Mapping[str, Tensor], expected: Mapping[str, Tensor], *, what: str) -> None:
    """Raise a :class:`CheckpointError` naming every missing, unexpected or misshapen tensor."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    misshapen = sorted(
        f"{k}: {tuple(found[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(found) & set(expected)
        if found[k].shape != expected[k].shape
    )
    problems = [
        f"{label} {items[:8]}{' ...' if len(items) > 8 else ''}"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", misshapen),
        )
        if items
    ]
    if problems:
        raise CheckpointError(f"{what} does not fit: " + "; ".join(problems))


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write a project checkpoint atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    metadata = {
        "format": FORMAT,
        "variant": checkpoint.variant.name,
        "sha256": checkpoint.sha256,
        "source": checkpoint.source,
        "training": json.dumps(checkpoint.training, sort_keys=True),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in checkpoint.state_dict.items()}
    with atomic_path(path) as scratch:
        save_file(tensors, scratch, metadata=metadata)
    return path


def read_project_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    # One read into memory the checkpoint owns: tensors mapped from the file
    # would fault (SIGBUS) once the file is overwritten in place.
    try:
        data = path.read_bytes()
        state = load_safetensors(data)
        header_size = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_size]).get("__metadata__") or {}
    except (OSError, ValueError, SafetensorError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an EXTD checkpoint (format {metadata.get('format')!r})")
    try:
        variant = Variant.parse(metadata["variant"])
        training = json.loads(metadata.get("training") or "{}")
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{path}: bad checkpoint metadata ({error})") from error
    checkpoint = Checkpoint(variant, state, source=metadata.get("source", ""), training=training)
    if checkpoint.sha256 != metadata.get("sha256"):
        raise CheckpointError(f"{path}: content hash mismatch, the file is corrupt")
    check_keys(state, EXTD(variant).state_dict(), what=str(path))
    return checkpoint


def release_key_map(variant: Variant) -> dict[str, str]:
    """Module prefixes of the release's state_dict -> this project's module prefixes.

    The release lays every block out as one ``nn.Sequential`` of (conv, BN,
    act) triples, so parameter-free activations still take up an index.
    """

    def block(release: str, project: str, expansion: int) -> dict[str, str]:
        layers = [
            f"{part}.{layer}" for part in ("expand", "depthwise") for layer in ("conv", "bn", "act")
        ]
        layers = layers[3:] if expansion == 1 else layers
        layers += ["project.conv", "project.bn"]
        layers += ["project.act"] if variant.activation_after_projection else []
        return {f"{release}.{i}": f"{project}.{name}" for i, name in enumerate(layers)}

    mapping = {"base.0.0": "stem.conv", "base.0.1": "stem.bn", "base.0.2": "stem.act"}
    mapping |= block("base.1.conv", "entry", 1)
    for i, spec in enumerate(variant.stage):
        mapping |= block(f"base.{i + 2}.conv", f"stage.{i}", spec.expansion)
    if variant.head == "fpn":
        for k in range(5):
            for j, name in enumerate(("depthwise", "pointwise", "bn")):
                mapping[f"upfeat.{k}.{j}"] = f"top_down.{k}.{name}"
    for k in range(6):
        mapping[f"loc.{k}"] = f"box_heads.{k}"
        mapping[f"conf.{k}"] = f"class_heads.{k}"
    return mapping


def import_release(state: Mapping[str, Tensor], variant: Variant, *, source: str) -> Checkpoint:
    """Map a released state_dict onto this project's module names, strictly."""
    prefixes = release_key_map(variant)
    mapped: dict[str, Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix not in prefixes:
            unknown.append(key)
            continue
        mapped[f"{prefixes[prefix]}.{leaf}"] = tensor
    if unknown:
        raise CheckpointError(f"{source}: keys the {variant} layout does not have: {unknown[:8]}")
    expected = EXTD(variant).state_dict()
    for key, tensor in mapped.items():
        # The release keeps one set of statistics per stage norm; it serves every use.
        target = expected.get(key)
        if target is not None and target.dim() == 2 and tensor.dim() == 1:
            mapped[key] = tensor.expand(target.shape[0], -1).clone()
    check_keys(mapped, expected, what=f"{source} as {variant}")
    return Checkpoint(variant, mapped, source=source)


def infer_release_variant(state: Mapping[str, Tensor]) -> Variant:
    """Read head and width off a released state_dict (all released files use PReLU)."""
    try:
        width = state["loc.0.weight"].shape[1]
    except KeyError as error:
        raise CheckpointError("not an EXTD state_dict (no 'loc.0.weight')") from error
    head = "fpn" if any(k.startswith("upfeat.") for k in state) else "ssd"
    prelu = "base.0.2.weight" in state
    return Variant(head, int(width), "prelu" if prelu else "relu")


def read_release_checkpoint(path: str | Path, variant: Variant | None = None) -> Checkpoint:
    """Import a released ``.pth`` (a plain state_dict, loaded with ``weights_only=True``)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad pickle
        raise CheckpointError(
            f"{path}: not a readable torch state_dict of tensors "
            f"(loaded with weights_only=True; {type(error).__name__})"
        ) from error
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state_dict of tensors")
    return import_release(state, variant or infer_release_variant(state), source=path.name)


def read_checkpoint(path: str | Path, variant: Variant | None = None) -> Checkpoint:
    """Read either kind of checkpoint file, chosen by its suffix."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == PROJECT_SUFFIX:
        return read_project_checkpoint(path)
    return read_release_checkpoint(path, variant)


def load_into(network: nn.Module, checkpoint: Checkpoint) -> None:
    """Copy a checkpoint's weights into an existing network of the same variant."""
    check_keys(
        checkpoint.state_dict,
        network.state_dict(),
        what=f"checkpoint {checkpoint.source}",
    )
    network.load_state_dict(checkpoint.state_dict, strict=True)
