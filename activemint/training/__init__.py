"""One trainer for plain and active runs; checkpoints; run directories."""
from activemint.training.config import RECIPES, TrainConfig
from activemint.training.trainer import (
    PlainModel,
    RunData,
    RunResult,
    Trainer,
    build_model,
    evaluate,
    load_run_data,
    membership_scores,
    predict_classes,
)

__all__ = ["RECIPES", "TrainConfig", "Trainer", "RunResult", "RunData", "PlainModel", "build_model", "evaluate",
           "load_run_data", "membership_scores", "predict_classes"]
