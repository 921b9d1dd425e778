"""WIDER FACE evaluation: ground truth, prediction folders and the official AP."""

from model.eval.ap import EvalResult, evaluate
from model.eval.compare import FacesFound, faces_found
from model.eval.predictions import read_predictions, write_predictions
from model.eval.runner import predict_split
from model.eval.split import SETTINGS, WiderSplit, load_split

__all__ = [
    "SETTINGS",
    "EvalResult",
    "FacesFound",
    "WiderSplit",
    "evaluate",
    "faces_found",
    "load_split",
    "predict_split",
    "read_predictions",
    "write_predictions",
]
