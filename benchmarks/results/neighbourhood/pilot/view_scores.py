import sys
import time

import numpy as np
import torch

from activemint.neighbourhood import get_view_set, view_scores
from activemint.runs import load_run
from activemint.transforms import apply_transform

run = load_run(sys.argv[1], device="cpu")
vs = get_view_set(sys.argv[2])
n = int(sys.argv[3])
d, s = run.data, run.data.splits
rng = np.random.default_rng(0)


def pick(idx):
    return np.sort(rng.choice(np.asarray(idx), n, replace=False))


imgs = {
    "members": d.train.images[torch.as_tensor(pick(s.members))],
    "eval": d.test.images[torch.as_tensor(pick(s.eval_nonmembers))],
    "external": d.train.images[torch.as_tensor(pick(s.external))],
    "validation": d.train.images[torch.as_tensor(pick(s.validation))],
}
out = {}
for t in sys.argv[4].split(","):
    name, _, lv = t.partition(":")
    for r, x in imgs.items():
        if r in ("external", "validation") and t != "none":
            continue
        xx = x if t == "none" else apply_transform(x, name, lv, seed=0)
        t0 = time.time()
        out[f"{t}|{r}"] = view_scores(run.membership_logits, xx, vs)
        print(t, r, time.time() - t0, flush=True)
np.savez(sys.argv[5], labels=np.array(vs.labels()), **out)
