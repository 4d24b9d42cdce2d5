"""Train via the CLI, additionally keeping every epoch's weights (RUN/kept-epochs/epoch-NNNN.safetensors
+ .json), so every selection rule (last / val_task / val_mint / ...) can be evaluated after one training
run (the trainer itself keeps only the last and the selected epoch's checkpoint)."""
import shutil
import sys

import activemint.training.trainer as tr
from activemint.cli import main
from activemint.rundir import CKPT_META, CKPT_WEIGHTS

_orig = tr.save_checkpoint


def save_checkpoint(root, epoch, *args, **kwargs):
    ckpt = _orig(root, epoch, *args, **kwargs)
    kept = root.parent / "kept-epochs"
    kept.mkdir(exist_ok=True)
    shutil.copy(ckpt.dir / CKPT_WEIGHTS, kept / f"epoch-{epoch:04d}.safetensors")
    shutil.copy(ckpt.dir / CKPT_META, kept / f"epoch-{epoch:04d}.json")
    return ckpt


tr.save_checkpoint = save_checkpoint
sys.exit(main(sys.argv[1:]))
