"""Train via the CLI, additionally keeping every epoch's weights (checkpoints/epoch-NNN.safetensors),
so every selection rule (last / val_task / val_mint / ...) can be evaluated after one training run."""
import shutil
import sys
from pathlib import Path

import activemint.training.trainer as tr
from activemint.cli import main

_orig = tr.save_weights
def save_weights(model, path, meta):
    _orig(model, path, meta)
    p = Path(path)
    if p.name == "last.safetensors":
        shutil.copy(p, p.with_name(f"epoch-{meta['epoch']:03d}.safetensors"))
        shutil.copy(p.with_suffix(".json"), p.with_name(f"epoch-{meta['epoch']:03d}.json"))
tr.save_weights = save_weights
sys.exit(main(sys.argv[1:]))
