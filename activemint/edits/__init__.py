"""Model edits of an audited run (fine-tuning, pruning, quantisation, distillation) and the audit after them.

:mod:`.apply` makes one named, seeded edit and writes it as a run directory of its own;
:mod:`.table` edits a run every way asked and measures the head and the black-box loss attack
on each edited model (``activemint model-edits``); :mod:`.ops` holds the operations.
"""
from .apply import (
                    EDITS,
                    EditError,
                    EditOptions,
                    check_level,
                    edit_label,
                    edit_run,
                    head_training_members,
                    parse_edits,
                    scored_members,
)
from .table import FILES, EditRow, run_model_edits

__all__ = ["EDITS", "FILES", "EditError", "EditOptions", "EditRow", "check_level", "edit_label", "edit_run",
           "head_training_members", "parse_edits", "run_model_edits", "scored_members"]
