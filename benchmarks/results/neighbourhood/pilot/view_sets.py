import sys

import numpy as np
from sklearn.metrics import roc_auc_score

z = np.load(sys.argv[1])
L = list(z["labels"])


def auc(m, n):
    return roc_auc_score(np.r_[np.ones(len(m)), np.zeros(len(n))], np.r_[m, n])


ax1 = ["shift(+1,+0)", "shift(-1,+0)", "shift(+0,+1)", "shift(+0,-1)"]
ax2 = ["shift(+2,+0)", "shift(-2,+0)", "shift(+0,+2)", "shift(+0,-2)"]
diag1 = ["shift(+1,+1)", "shift(-1,-1)", "shift(+1,-1)", "shift(-1,+1)"]
sets = {
    "exact": ["exact"],
    "ax2": ["exact"] + ax2,
    "ax12": ["exact"] + ax1 + ax2,
    "ax12+sharp": ["exact"] + ax1 + ax2 + ["sharpen:2"],
    "ax12d+sharp": ["exact"] + ax1 + ax2 + diag1 + ["sharpen:2"],
    "ax12+sharp+zoom": ["exact"] + ax1 + ax2 + ["sharpen:2", "scale 0.9", "scale 0.95"],
    "ax12+sharp+rot": ["exact"] + ax1 + ax2 + ["sharpen:2", "rot +5", "rot -5"],
}
ref = z["none|external"]
copies = ["none", "translate:2px", "crop:0.9", "resize:0.75"]
for name, vs in sets.items():
    ix = [L.index(v) for v in vs]
    mu, sd = ref[ix].mean(1, keepdims=True), ref[ix].std(1, keepdims=True)
    out = []
    for c in copies:
        m, n = z[f"{c}|members"][ix], z[f"{c}|eval"][ix]

        def t2(a):
            return np.sort(a, 0)[-2:].mean(0)

        out.append(
            f"{c}: max {auc(m.max(0), n.max(0)):.3f} top2 {auc(t2(m), t2(n)):.3f} zmax {auc(((m - mu) / sd).max(0), ((n - mu) / sd).max(0)):.3f}"
        )
    print(f"{name:18s} ({len(ix)}) " + " | ".join(out))
