"""Offline training: WIDER data, the recipe's augmentation, S3FD matching, MultiBox loss, DDP."""

from model.train.config import TrainConfig
from model.train.trainer import Trainer

__all__ = ["TrainConfig", "Trainer"]
