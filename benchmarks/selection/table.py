import json
import sys


def rows(run):
    d = json.load(open(f"runs/sel/{run}/epochs.json"))
    return d["rules"], {r["epoch"]: r for r in d["rows"]}
def f(x, n=3): return "–" if x is None else f"{x:.{n}f}"
print("| run | rule | epoch kept | val acc | val AUC | test acc | AUC | TPR@1%FPR | acc@0.5 | acc@cal (TPR, FPR) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for run in sys.argv[1:]:
    rules, by = rows(run)
    for rule in ("last", "val_task", "val_mint", "val_task_mint"):
        if run == "plain" and rule == "val_mint":
            continue
        r = by[rules[rule]]
        print(f"| {run} | {rule} | {r['epoch']} | {f(r['val_accuracy'])} | {f(r.get('val_membership_auc'))} | {f(r['test_accuracy'], 4)} | "
              f"{f(r.get('auc'))} | {f(r.get('tpr_at_1pct_fpr'))} | {f(r.get('accuracy_at_0_5'))} | "
              + (f"{f(r.get('accuracy_at_calibrated'))} ({f(r.get('tpr_at_calibrated'))}, {f(r.get('fpr_at_calibrated'), 4)})" if r.get('accuracy_at_calibrated') is not None else "–") + " |")
