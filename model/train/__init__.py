"""Offline training: WIDER data, the recipe's augmentation, S3FD matching, MultiBox loss, DDP."""

from model.train.trainer import TrainConfig, Trainer

__all__ = ["TrainConfig", "Trainer"]
