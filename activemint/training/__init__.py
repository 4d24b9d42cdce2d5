"""One trainer for plain and active runs; checkpoints; run directories.

The trainer (and with it torch) is imported on first use, so that the command line can
read :class:`TrainConfig`'s fields and choices to build its options without importing torch.
"""
from activemint.training.config import RECIPES, TrainConfig

#: Lazily imported names and their modules.
_LAZY = {"PlainModel": "activemint.mint", "RunData": "activemint.training.data", "load_run_data": "activemint.training.data",
         "evaluate": "activemint.training.evaluation", "membership_scores": "activemint.training.evaluation",
         "predict_classes": "activemint.training.evaluation", "RunResult": "activemint.training.trainer",
         "Trainer": "activemint.training.trainer", "build_model": "activemint.training.build"}

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
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
