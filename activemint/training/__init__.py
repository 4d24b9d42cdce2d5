"""One trainer for plain and active runs; checkpoints; run directories.

The trainer (and with it torch) is imported on first use, so that the command line can
read :class:`TrainConfig`'s fields and choices to build its options without importing torch.
"""
from activemint.training.config import RECIPES, TrainConfig

_TRAINER = ("PlainModel", "RunData", "RunResult", "Trainer", "build_model", "evaluate", "load_run_data",
            "membership_scores", "predict_classes")

__all__ = [
    "RECIPES",
    "PlainModel",
    "RunData",
    "RunResult",
    "TrainConfig",
    "Trainer",
    "build_model",
    "evaluate",
    "load_run_data",
    "membership_scores",
    "predict_classes",
]


def __getattr__(name):  # lazy: torch is imported with the trainer, not with the config
    if name in _TRAINER:
        from activemint.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
