"""``train --baseline``: the plain model beside the aMINT run (a second process), or after it."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from activemint.cli import main

TINY = ["train", "--members", "120", "--external", "240", "--validation", "60", "--calibration", "60",
        "--eval-nonmembers", "60", "--epochs", "2", "--batch-size", "32", "--external-batch-size", "32",
        "--no-progress", "--baseline"]


@pytest.mark.slow
def test_baseline_beside_the_run_equals_the_baseline_after_it(tmp_path, capsys):
    """Beside (the default on >= 2 threads) the baseline runs as ``activemint train`` on half the
    threads; after the aMINT run, on as many threads, it is the same computation: same weights and
    figures (one machine), and the aMINT run's metrics.json carries the baseline's accuracy."""
    if torch.get_num_threads() < 2:
        pytest.skip("one CPU thread: the baseline cannot train beside the run")
    threads = torch.get_num_threads()
    assert main([*TINY, "--out", str(tmp_path / "beside")]) == 0
    err = capsys.readouterr().err
    assert "beside it, on 1 thread" in err or threads != 2
    assert torch.get_num_threads() == threads
    assert (tmp_path / "beside" / "baseline" / "train.log").is_file()
    assert main([*TINY, "--baseline-after", "--threads", str(threads // 2), "--out", str(tmp_path / "after")]) == 0
    capsys.readouterr()
    torch.set_num_threads(threads)
    b1, b2 = tmp_path / "beside" / "baseline", tmp_path / "after" / "baseline"
    m1, m2 = (json.loads((b / "metrics.json").read_text()) for b in (b1, b2))
    assert m1["test_accuracy"] == m2["test_accuracy"]
    w1, w2 = load_file(b1 / "model.safetensors"), load_file(b2 / "model.safetensors")
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    run = json.loads((tmp_path / "beside" / "metrics.json").read_text())
    assert run["baseline_test_accuracy"] == m1["test_accuracy"] and run["baseline_beside"] is True
    assert json.loads((tmp_path / "after" / "metrics.json").read_text())["baseline_beside"] is False
