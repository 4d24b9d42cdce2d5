import sys

import numpy as np
from sklearn.metrics import roc_auc_score

z = np.load(sys.argv[1])
labels = list(z["labels"])


def auc(m, n):
    return roc_auc_score(np.r_[np.ones(len(m)), np.zeros(len(n))], np.r_[m, n])


def tpr1(m, n):
    t = np.quantile(n, 0.99)
    return (m > t).mean()


copies = sorted({k.split("|")[0] for k in z.files if "|" in k}, key=lambda c: (c != "none", c))
for refname in ("external", "validation"):
    ref = z[f"none|{refname}"]
    mu, sd = ref.mean(1, keepdims=True), ref.std(1, keepdims=True) + 1e-9
    print("ref", refname)
    for c in copies:
        m, n = z[f"{c}|members"], z[f"{c}|eval"]
        zm, zn = (m - mu) / sd, (n - mu) / sd
        per = [auc(m[j], n[j]) for j in range(len(labels))]
        best = np.argsort(per)[::-1][:4]

        def srt(a, k):
            return np.sort(a, 0)[-k:].mean(0)

        res = {
            "exact": auc(m[0], n[0]),
            "max": auc(m.max(0), n.max(0)),
            "mean": auc(m.mean(0), n.mean(0)),
            "top3": auc(srt(m, 3), srt(n, 3)),
            "zmax": auc(zm.max(0), zn.max(0)),
            "zmean": auc(zm.mean(0), zn.mean(0)),
            "ztop3": auc(srt(zm, 3), srt(zn, 3)),
            "zlse": auc(np.log(np.exp(zm).sum(0)), np.log(np.exp(zn).sum(0))),
        }
        print(
            f"  {c:14s} "
            + " ".join(f"{k} {v:.3f}" for k, v in res.items())
            + f" | tpr1 exact {tpr1(m[0], n[0]):.2f} zmax {tpr1(zm.max(0), zn.max(0)):.2f} max {tpr1(m.max(0), n.max(0)):.2f}"
        )
        print("     best views:", ", ".join(f"{labels[j]} {per[j]:.3f}" for j in best))
