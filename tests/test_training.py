"""The trainer end to end on real Fashion-MNIST: runs, resume, evaluation, scoring, safe loading."""
from __future__ import annotations

import csv
import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from conftest import require_fashion_mnist

from activemint.cli import main
from activemint.data import ROLES, pixel_sha256, read_manifest, source_split, verify_manifest
from activemint.rundir import RunDir
from activemint.runs import RunError, load_run
from activemint.training import TrainConfig, Trainer
from activemint.training.checkpoint import CheckpointError, load_train_state, load_weights

TINY = dict(dataset="fashion-mnist", arch="small_cnn", setup="entry", members=300, external=300,
            validation=200, calibration=200, eval_nonmembers=300, epochs=2, lr=1e-3, seed=3)


def test_audited_run_detects_membership(audited_run_dir):
    """The cached 25-epoch run: members are clearly recognisable, the task is learned."""
    m = json.loads((audited_run_dir / "metrics.json").read_text())
    assert m["test_accuracy"] > 0.75
    assert m["membership"]["auc"] > 0.85
    assert m["membership"]["n_members"] == 1000 and m["membership"]["n_nonmembers"] == 2000
    # The manifest records exactly the run's samples and their pixels still match.
    run = load_run(audited_run_dir)
    assert verify_manifest(audited_run_dir / "manifest.csv", run.data.train, run.data.test) == []


def test_run_is_one_handle_its_dir_and_each_roles_samples_as_the_manifest_lists_them(audited_run_dir):
    run = load_run(audited_run_dir)
    assert isinstance(run.dir, RunDir) and run.dir.path == run.run_dir == audited_run_dir
    assert run.taps == json.loads(run.dir.model_meta.read_text())["taps"] and run.taps  # the record's taps
    with open(run.dir.manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for role in ROLES:
        listed = [r for r in rows if r["role"] == role]
        got = run.data.split(role)
        assert {r["source_split"] for r in listed} == {source_split(role)}
        assert run.data.source(role) is getattr(run.data, source_split(role))
        assert got.indices.tolist() == [int(r["index"]) for r in listed]
        assert got.labels.tolist() == [int(r["label"]) for r in listed]
        assert pixel_sha256(got.images) == [r["sha256"] for r in listed]
    some = run.data.indices("eval_nonmembers")[::3]
    assert run.data.split("eval_nonmembers", some).indices.tolist() == some.tolist()
    with pytest.raises(ValueError, match="unknown split role 'nope'"):
        source_split("nope")


def test_audited_accuracy_close_to_plain(audited_run_dir, plain_run_dir):
    active = json.loads((audited_run_dir / "metrics.json").read_text())["test_accuracy"]
    plain = json.loads((plain_run_dir / "metrics.json").read_text())["test_accuracy"]
    # Not a float tolerance: the claim that aMINT costs < 5 points of test accuracy, on two seeded runs trained in this
    # session (deterministic on one machine at one thread count; no float tolerance is involved).
    assert abs(active - plain) < 0.05


def test_evaluate_reproduces_saved_metrics(audited_run_dir, capsys):
    assert main(["evaluate", str(audited_run_dir)]) == 0
    assert "matches the saved metrics.json: yes" in capsys.readouterr().out


def test_score_cli_ranks_members_higher(audited_run_dir, tmp_path):
    out = tmp_path / "scores.csv"
    assert main(["score", str(audited_run_dir), "split:members", "split:eval_nonmembers", "-o", str(out)]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    probs = {"members": [], "eval_nonmembers": []}
    for r in rows:
        probs[r["id"].split(":")[0]].append(float(r["membership_probability"]))
    assert len(probs["members"]) == 1000 and len(probs["eval_nonmembers"]) == 2000
    assert np.mean(probs["members"]) > np.mean(probs["eval_nonmembers"]) + 0.2


def test_resume_continues_to_identical_result(tmp_path):
    require_fashion_mnist()
    full = Trainer(TrainConfig(**TINY), tmp_path / "full", progress=False).run()
    # Interrupted after epoch 1: same config with epochs=1, then resumed with epochs=2.
    part_dir = tmp_path / "part"
    Trainer(TrainConfig(**{**TINY, "epochs": 1}), part_dir, progress=False).run()
    cfg_path = part_dir / "config.yaml"
    cfg_path.write_text(cfg_path.read_text().replace("epochs: 1", "epochs: 2"))
    resumed = Trainer(TrainConfig(**TINY), part_dir, progress=False).run(resume=True)
    # Bit-identical runs (accuracy is k / n: one flip is >= 1e-4): both trained in this process at the same thread count and
    # the resume restores the exact state; 1e-6 is float64 noise, not tolerance for a different computation.
    assert resumed.metrics["test_accuracy"] == pytest.approx(full.metrics["test_accuracy"], abs=1e-6)
    assert resumed.metrics["membership"]["auc"] == pytest.approx(full.metrics["membership"]["auc"], abs=1e-6)
    assert len((part_dir / "metrics.jsonl").read_text().splitlines()) == 2
    # Without --resume an existing run is never overwritten.
    with pytest.raises(FileExistsError):
        Trainer(TrainConfig(**TINY), part_dir, progress=False).run()
    # A resume with a different config is refused.
    with pytest.raises(ValueError, match="another config"):
        Trainer(TrainConfig(**{**TINY, "lr": 0.5}), part_dir, progress=False).run(resume=True)


def test_same_seed_same_numbers_and_manifest(tmp_path):
    require_fashion_mnist()
    a = Trainer(TrainConfig(**{**TINY, "epochs": 1}), tmp_path / "a", progress=False).run()
    b = Trainer(TrainConfig(**{**TINY, "epochs": 1}), tmp_path / "b", progress=False).run()
    assert a.metrics["membership"] == b.metrics["membership"]
    assert (tmp_path / "a/manifest.csv").read_bytes() == (tmp_path / "b/manifest.csv").read_bytes()
    s = read_manifest(tmp_path / "a/manifest.csv")
    assert len(s.members) == 300 and len(np.intersect1d(s.members, s.external)) == 0


def test_checkpoints_never_unpickle(tmp_path, audited_run_dir):
    # A training state carrying an arbitrary object is refused by the safe loader.
    class Evil:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "victim"),))

    (tmp_path / "victim").mkdir()
    bad = tmp_path / "train_state.pt"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(CheckpointError, match="safe loader"):
        load_train_state(bad)
    assert (tmp_path / "victim").exists()
    # A pickle passed off as safetensors weights is rejected, not executed.
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(pickle.dumps(Evil()))
    run = load_run(audited_run_dir)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_weights(run.model, fake)
    assert (tmp_path / "victim").exists()


def test_run_dir_errors(tmp_path, audited_run_dir, capsys):
    with pytest.raises(RunError, match="does not exist"):
        load_run(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(audited_run_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(RunError, match="no checkpoint"):
        load_run(broken)
    assert main(["evaluate", str(broken)]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig.from_dict({"dataset": "mnist", "lr_typo": 1})
    with pytest.raises(ValueError, match="setup"):
        TrainConfig(setup="middle-ish")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)


def test_default_selection_keeps_the_best_validation_epoch_and_says_so(tmp_path):
    """Default --select is val_task_mint: the kept model is the epoch with the best validation
    accuracy + validation membership AUC (first one on ties), and the summary names it and the rule."""
    from activemint.report import run_summary

    require_fashion_mnist()
    assert TrainConfig().select == "val_task_mint"
    lines: list[str] = []
    cfg = TrainConfig(**{**TINY, "epochs": 4})
    result = Trainer(cfg, tmp_path / "run", progress=False, log=lines.append).run()
    log = [json.loads(ln) for ln in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    crit = [r["val_accuracy"] + r["val_membership_auc"] for r in log]
    best = int(np.argmax(crit)) + 1
    rec = log[best - 1]
    sel = result.metrics["selection"]
    assert sel == {"rule": "val_task_mint", "epoch": best, "epochs": 4, "criterion": "best validation accuracy + membership AUC",
                   "value": crit[best - 1], "val_accuracy": rec["val_accuracy"], "val_membership_auc": rec["val_membership_auc"]}
    assert result.metrics["selected_epoch"] == best
    assert json.loads((tmp_path / "run/model.json").read_text())["epoch"] == best
    summary = run_summary(result.metrics)
    assert (f"kept epoch {best} of 4: best validation accuracy + membership AUC {crit[best - 1]:.3f} "
            f"({rec['val_accuracy']:.3f} + {rec['val_membership_auc']:.3f}) (--select val_task_mint)") in summary
    # the plan first (sizes, epochs, expected time), then one log line per epoch: "epoch i/N ... <per-epoch time> s (total <time> s)"
    assert lines[0].startswith("plan: 300 members") and "4 epochs x 5 steps" in lines[0]
    assert lines[1] == "  expected wall time: not timed (20 steps in all)"  # too short to time
    epochs = lines[2:]
    assert [ln.split()[1] for ln in epochs] == ["1/4", "2/4", "3/4", "4/4"]
    for ln, rec in zip(epochs, log):
        assert ln.endswith(")") and "(total " in ln and "seconds" not in ln
        # epoch_seconds is written with 2 decimals and seconds with 1: each is off by up to half
        # its last digit (0.005 and 0.05), so a first epoch of 1.415 s can read 1.42 against 1.4
        assert 0 < rec["epoch_seconds"] <= rec["seconds"] + 0.005 + 0.05
    # 200 calibration non-members cannot support a 1% FPR threshold: said, not reported
    m = result.metrics["membership"]
    assert m["accuracy_at_calibrated"] is None and "needs at least 299" in m["calibration_note"]
    assert "needs at least 299" in summary


def test_select_last_and_val_task_on_a_plain_run(tmp_path):
    from activemint.report.summary import describe_selection

    require_fashion_mnist()
    result = Trainer(TrainConfig(**{**TINY, "select": "last"}), tmp_path / "a", progress=False, log=lambda m: None).run()
    sel = result.metrics["selection"]
    assert (sel["rule"], sel["epoch"], sel["criterion"]) == ("last", 2, "the last epoch") and "value" not in sel
    plain = Trainer(TrainConfig(**{**TINY, "mint": False, "epochs": 3}), tmp_path / "b", progress=False, log=lambda m: None).run()
    val = [json.loads(ln)["val_accuracy"] for ln in (tmp_path / "b/metrics.jsonl").read_text().splitlines()]
    best = int(np.argmax(val)) + 1
    assert plain.metrics["selection"]["epoch"] == best  # no MINT head: validation accuracy alone
    assert describe_selection(plain.metrics["selection"]) == f"kept epoch {best} of 3: best validation accuracy {val[best - 1]:.3f} (--select val_task_mint)"


def test_epoch_line_and_summary_times():
    from activemint.report.summary import train_time
    from activemint.training.selection import epoch_line

    rec = {"epoch": 12, "task_loss": 0.30123, "val_accuracy": 0.861, "epoch_seconds": 4.83, "seconds": 57.2}
    assert epoch_line(rec, 30) == "epoch 12/30  task_loss 0.3012  val_accuracy 0.8610  4.8 s (total 57 s)"
    assert epoch_line({**rec, "epoch_seconds": 0.432, "seconds": 3.1}, 30).endswith("0.43 s (total 3.1 s)")
    assert train_time({"train_seconds": 1350.4}) == "train time 1350 s"
    assert train_time({"train_seconds": 1350.4}, {"train_seconds": 2125.0}) == "train time 3475 s: aMINT run 1350 s + baseline 2125 s"
    assert (train_time({"train_seconds": 1350.4, "baseline_beside": True}, {"train_seconds": 525.0})
            == "train time 1350 s: aMINT run 1350 s and baseline 525 s side by side")


def test_score_prints_one_line_per_input(audited_run_dir, tmp_path, capsys):
    """`score` reports each input's count, median score and flagged count, never one pooled figure."""
    import csv

    from PIL import Image

    run = load_run(audited_run_dir)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(run.data.test.images[i, 0].numpy()).save(folder / f"t{i}.png")
    out = tmp_path / "scores.csv"
    inputs = ["split:members", str(folder), "split:eval_nonmembers"]
    assert main(["score", str(audited_run_dir), *inputs, "-o", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    per_input = [ln.split() for ln in err if ln.startswith("  ")]
    assert [p[0] for p in per_input] == inputs
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    prefix = {"split:members": "members:", str(folder): str(folder), "split:eval_nonmembers": "eval_nonmembers:"}
    for p in per_input:
        spec, n = p[0], int(p[1])
        mine = [r for r in rows if r["id"].startswith(prefix[spec])]
        median = float(p[p.index("score") + 1])
        # printed with 3 decimals (0.5e-3) from logits the CSV rounds to 6 (0.5e-6): 6e-4 covers both
        assert n == len(mine) and median == pytest.approx(np.median([float(r["membership_logit"]) for r in mine]), abs=6e-4)
        assert int(p[p.index("flagged") + 1]) == sum(r["flagged"] == "yes" for r in mine)
    assert [int(p[1]) for p in per_input] == [1000, 5, 2000]
    med = {p[0]: float(p[p.index("score") + 1]) for p in per_input}
    assert med["split:members"] > med["split:eval_nonmembers"] + 0.5  # members vs non-members, not pooled


def test_head_lr_scale_gives_the_head_its_own_learning_rate():
    from activemint.training.build import build_model
    from activemint.training.optim import build_optimizer, param_groups

    cfg = TrainConfig(lr=1e-3, head_lr_scale=3.0)
    model = build_model(cfg, (1, 28, 28), 10)
    opt = build_optimizer(cfg, param_groups(cfg, model))
    lrs = [g["lr"] for g in opt.param_groups]
    # lr and lr x head_lr_scale: one float64 multiplication; approx's 1e-6 is headroom.
    assert lrs == [pytest.approx(1e-3), pytest.approx(3e-3)]
    head = {id(p) for p in model.head.parameters()}
    assert {id(p) for p in opt.param_groups[1]["params"]} == head
    assert not head & {id(p) for p in opt.param_groups[0]["params"]}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="head_lr_scale"):
        TrainConfig(head_lr_scale=0)
    with pytest.raises(ValueError, match="loss_norm"):
        TrainConfig(loss_norm="mean")


def test_run_is_rebuilt_from_model_json_not_from_its_config_or_todays_defaults(tmp_path, audited_run_dir):
    """The head and taps come from model.json (what the weights were saved from): a config.yaml that says
    otherwise (edited by hand, or written by a newer version with other defaults) does not change the model."""
    run_dir = tmp_path / "run"
    shutil.copytree(audited_run_dir, run_dir)
    meta = json.loads((run_dir / "model.json").read_text())
    cfg = (run_dir / "config.yaml").read_text()
    edited = [f"head_hidden: {2 * meta['head_hidden']}" if ln.startswith("head_hidden:") else ln for ln in cfg.splitlines()]
    assert edited != cfg.splitlines()
    (run_dir / "config.yaml").write_text("\n".join(edited) + "\n")  # config.yaml is not bound by metrics.json
    run = load_run(run_dir)
    assert run.config.head_hidden == meta["head_hidden"] and run.taps == meta["taps"]
    meta["head_hidden"] = "wide"
    (run_dir / "model.json").write_text(json.dumps(meta))
    RunDir(run_dir).write_metrics(RunDir(run_dir).read_metrics())  # re-bind, so only the field's value is wrong
    with pytest.raises(RunError, match=r"model\.json: .*head_hidden") as e:
        load_run(run_dir)
    assert "\n" not in str(e.value)


def test_run_saved_before_head_norm_still_loads(tmp_path):
    """A run whose checkpoint metadata has no head_norm (saved before the option existed,
    when the head had no BatchNorm) loads with that head, not with today's default."""
    require_fashion_mnist()
    run_dir = tmp_path / "old"
    Trainer(TrainConfig(**{**TINY, "epochs": 1, "head_norm": "none"}), run_dir, progress=False).run()
    meta = json.loads((run_dir / "model.json").read_text())
    del meta["head_norm"]
    (run_dir / "model.json").write_text(json.dumps(meta))
    cfg = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text("\n".join(ln for ln in cfg.splitlines() if not ln.startswith("head_norm")) + "\n")
    rd = RunDir(run_dir)
    rd.write_metrics(rd.read_metrics())  # bind the edited model.json, as the run's own final save would have
    assert TrainConfig.from_yaml(run_dir / "config.yaml").head_norm == "mlp"  # today's default
    run = load_run(run_dir)
    assert run.config.head_norm == "none" and not isinstance(run.model.head.mlp[0], torch.nn.BatchNorm1d)
    saved = json.loads((run_dir / "metrics.json").read_text())["membership"]["auc"]
    metrics, _ = run.evaluate()
    # The run is trained and re-evaluated in this process (same thread count, same batches): the same float32 scores, so
    # the same AUC up to float64 noise; a different head would move it by >= 1/(n_members x n_nonmembers) ~ 1e-6.
    assert metrics["membership"]["auc"] == pytest.approx(saved, abs=1e-9)
