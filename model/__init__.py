"""EXTD, the Extremely Tiny Face Detector: network, checkpoints and a batched detector."""

from model.checkpoint import Checkpoint, CheckpointError, read_checkpoint, save_checkpoint
from model.detector import Detector, PreparedImage, ScalePolicy
from model.images import ImageError, ImageTooLargeError, open_image
from model.network import EXTD, count_parameters
from model.postprocess import PostprocessOptions
from model.variants import ALL_VARIANTS, Variant
from model.weights import WeightsError, load_checkpoint, pull

__all__ = [
    "ALL_VARIANTS",
    "EXTD",
    "Checkpoint",
    "CheckpointError",
    "Detector",
    "ImageError",
    "ImageTooLargeError",
    "PostprocessOptions",
    "PreparedImage",
    "ScalePolicy",
    "Variant",
    "WeightsError",
    "count_parameters",
    "load_checkpoint",
    "open_image",
    "pull",
    "read_checkpoint",
    "save_checkpoint",
]
