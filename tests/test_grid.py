"""The paper's grid as configuration, and the grid runner (skip if done, resume, table)."""
from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import pytest
import yaml

from activemint import grid
from activemint.cli import main
from activemint.data import SplitSizes
from activemint.training import TrainConfig

REPO = Path(__file__).resolve().parent.parent
PAPER_DATASETS = ["mnist", "cifar10", "gtsrb", "tiny-imagenet", "casia-webface"]
PAPER_ARCHS = ["mobilenet_v2", "resnet50", "resnet101", "densenet121", "xception", "vit"]


@pytest.fixture(scope="module")
def matrix() -> grid.Matrix:
    return grid.load_matrix(REPO / "configs" / "grid.yaml")


def test_paper_profile_has_all_90_cells_with_paper_settings(matrix):
    cells = grid.expand(matrix, "paper")
    audited = [c for c in cells if c.mint]
    plain = [c for c in cells if not c.mint]
    assert len(audited) == 90 and len(plain) == 30
    assert {(c.dataset, c.arch, c.setup) for c in audited} == {
        (d, a, s) for d in PAPER_DATASETS for a in PAPER_ARCHS for s in ("entry", "middle", "output")}
    assert len({c.key for c in cells}) == len(cells), "two cells share a config hash"
    assert len({c.dirname for c in cells}) == len(cells)
    for c in cells:
        cfg = c.config
        assert (cfg.dataset, cfg.arch, cfg.mint) == (c.dataset, c.arch, c.mint)
        assert cfg.mint or c.setup == "plain"
        # The paper's protocol: Adam 1e-4, batch 64 + 64, no augmentation, 300 epochs.
        assert (cfg.resolved("optimizer"), cfg.resolved("lr"), cfg.batch_size, cfg.external_batch_size) == ("adam", 1e-4, 64, 64)
        assert cfg.resolved("augment") is False and cfg.epochs == 300
        # Split sizes: the paper's, with validation + calibration carved out of E.
        sizes = SplitSizes(cfg.members, cfg.external, cfg.validation, cfg.calibration, cfg.eval_nonmembers)
        assert sizes == SplitSizes.paper(c.dataset)
    mnist = next(c.config for c in audited if c.dataset == "mnist")
    assert (mnist.members, mnist.external + mnist.validation + mnist.calibration, mnist.eval_nonmembers) == (25000, 35000, 10000)
    assert next(c.config for c in audited if c.dataset == "casia-webface").lambda_mint == 1e-4
    # Paper figures exist for every cell of the four data sets of Table 1.
    rows = grid.paper_table(matrix)
    assert len(rows) == 72
    for c in audited:
        if c.dataset != "casia-webface":
            assert (c.dataset, matrix.paper_arch_names.get(c.arch, c.arch), c.setup) in rows


@pytest.mark.parametrize("profile", ["paper", "cpu"])
def test_committed_configs_are_the_generators_output(matrix, profile, tmp_path):
    """configs/<profile>/ holds exactly what `activemint grid --generate` writes, and each file
    is a valid TrainConfig equal to its cell's config."""
    cells = grid.expand(matrix, profile)
    folder = REPO / "configs" / profile
    assert sorted(p.name for p in folder.glob("*.yaml")) == sorted(f"{c.name}.yaml" for c in cells), \
        "stale configs: run `activemint grid --generate`"
    for c in cells:
        path = folder / f"{c.name}.yaml"
        assert path.read_text() == grid.render_config(c), f"{path} differs from the matrix; regenerate"
        assert TrainConfig.from_yaml(path) == c.config
        assert grid.config_hash(TrainConfig.from_yaml(path)) == c.key
    # The generator writes the same files elsewhere, and removes stale ones.
    (tmp_path / "stale.yaml").write_text("arch: gone\n")
    written = grid.generate_configs(matrix, profile, tmp_path)
    assert len(written) == len(cells) and not (tmp_path / "stale.yaml").exists()
    assert all((tmp_path / p.name).read_text() == p.read_text() for p in folder.glob("*.yaml"))


def test_cpu_profile_shrinks_sizes_and_epochs(matrix):
    paper = {(c.arch, c.setup): c.config for c in grid.expand(matrix, "paper", datasets=["mnist"])}
    cpu = grid.expand(matrix, "cpu")
    assert {c.dataset for c in cpu} == {"fashion-mnist"} and len(cpu) == 24
    for c in cpu:
        big = paper[(c.arch, c.setup)]
        for size in ("members", "external", "validation", "calibration", "eval_nonmembers"):
            assert getattr(c.config, size) < getattr(big, size)
        assert c.config.epochs < big.epochs
    # The cpu profile also applies to any other data set of the matrix.
    other = grid.expand(matrix, "cpu", datasets=["cifar10"], archs=["resnet50"], setups=["middle"])
    assert [(c.name, c.config.members) for c in other] == [("cifar10-resnet50-middle", 500)]


def test_matrix_errors_name_the_problem(tmp_path, matrix):
    raw = yaml.safe_load(matrix.path.read_text())
    raw["profiles"]["cpu"]["epoch"] = 3  # typo
    bad = tmp_path / "grid.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(grid.GridError, match="epoch"):
        grid.load_matrix(bad)
    with pytest.raises(grid.GridError, match="unknown architectures"):
        grid.expand(matrix, "cpu", archs=["resnet5O"])
    with pytest.raises(grid.GridError, match="unknown profile"):
        grid.expand(matrix, "gpu")


TINY = """
paper_table: paper.csv
archs: [small_cnn]
setups: [entry, middle, output]
datasets:
  digits: {paper_reference: mnist}
defaults: {recipe: paper, lr: 1.0e-3, batch_size: 32, external_batch_size: 32, seed: 0}
profiles:
  tiny:
    datasets: [digits]
    sizes: {members: 200, external: 300, validation: 100, calibration: 100, eval_nonmembers: 200}
    epochs: {default: 1, small_cnn: 2}
"""


@pytest.fixture
def tiny(tmp_path) -> grid.Matrix:
    (tmp_path / "grid.yaml").write_text(textwrap.dedent(TINY))
    (tmp_path / "paper.csv").write_text("dataset,architecture,setup,mint_accuracy_at_0.5,audited_accuracy\n"
                                        "mnist,small_cnn,entry,0.86,0.96\n")
    return grid.load_matrix(tmp_path / "grid.yaml")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train in-process on one thread: on a CPU shared with other jobs, OpenMP
    threads that spin at barriers make a 2-thread step many times slower, not faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Killed(BaseException):
    """Stands for a kill: not an Exception, so nothing in the grid catches it."""


def test_grid_cli_runs_skips_done_cells_and_writes_the_table(tiny, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["grid", "--matrix", str(tiny.path), "--profile", "tiny", "--setups", "entry,plain", "--out", str(out)]
    assert main(argv) == 0
    cells = grid.expand(tiny, "tiny", setups=["entry", "plain"])
    assert [c.name for c in cells] == ["digits-small_cnn-entry", "digits-small_cnn-plain"]
    stamps = {}
    for c in cells:
        assert grid.cell_status(c, out) == "done"
        stamps[c.name] = (out / c.dirname / "metrics.json").stat().st_mtime_ns
        assert TrainConfig.from_yaml(out / c.dirname / "config.yaml") == c.config
    # A second run trains nothing: both cells are keyed by their config hash and done.
    outcomes = grid.run_grid(cells, out, workers=1, log=lambda m: None)
    assert [o.status for o in outcomes] == ["done", "done"]
    assert {c.name: (out / c.dirname / "metrics.json").stat().st_mtime_ns for c in cells} == stamps
    # The table: paper figures beside ours, the plain baseline's accuracy, the differences.
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 1
    row = rows[0]
    entry = json.loads((out / cells[0].dirname / "metrics.json").read_text())
    plain = json.loads((out / cells[1].dirname / "metrics.json").read_text())
    assert float(row["paper_mint"]) == 0.86 and float(row["paper_aud"]) == 0.96
    # The table copies metrics.json's floats (written with repr, read back exactly); approx's 1e-6 relative is headroom.
    assert float(row["mint_acc_at_0_5"]) == pytest.approx(entry["membership"]["accuracy_at_0_5"])
    assert float(row["auc"]) == pytest.approx(entry["membership"]["auc"])
    assert float(row["tpr_at_1pct_fpr"]) == pytest.approx(entry["membership"]["tpr_at_1pct_fpr"])
    assert float(row["aud"]) == pytest.approx(entry["test_accuracy"])
    assert float(row["aud_without_amint"]) == pytest.approx(plain["test_accuracy"])
    assert float(row["mint_minus_paper"]) == pytest.approx(entry["membership"]["accuracy_at_0_5"] - 0.86)
    assert float(row["aud_cost_of_amint"]) == pytest.approx(entry["test_accuracy"] - plain["test_accuracy"])
    md = (out / "results.md").read_text()
    assert "digits (paper: mnist)" in md and "| entry |" in md
    # A config change is a different cell (new hash), not a reuse of the finished one.
    changed = grid.Cell("tiny", "digits", "small_cnn", "entry", TrainConfig(**{**cells[0].config.to_dict(), "lr": 5e-4}))
    assert changed.key != cells[0].key and grid.cell_status(changed, out) == "todo"
    # Fields added later hash like their absence when they hold the value that reproduces the
    # old behaviour; any other value is a new cell.
    neutral = {**cells[0].config.to_dict(), "head_stride": 1, "test_samples": None}
    assert grid.config_hash(TrainConfig(**neutral)) == cells[0].key
    assert grid.config_hash(TrainConfig(**{**neutral, "head_stride": 2})) != cells[0].key


def test_interrupted_cell_resumes_to_the_same_result(tiny, tmp_path):
    (cell,) = grid.expand(tiny, "tiny", setups=["middle"], baselines=False)
    assert cell.config.epochs == 2

    def kill_in_epoch_2(msg: str) -> None:
        if msg.startswith("[digits-small_cnn-middle] epoch 2/2 "):  # epoch 2 logged, not yet checkpointed
            raise Killed

    out = tmp_path / "runs"
    with pytest.raises(Killed):
        grid.run_cell(cell, out, log=kill_in_epoch_2)
    assert grid.cell_status(cell, out) == "partial"
    assert not (out / cell.dirname / "metrics.json").exists()
    # (In-process, like the reference run below: same thread count, so the same float sums.)
    assert grid.run_cell(cell, out, log=lambda m: None).status == "resumed"
    epochs = [json.loads(ln)["epoch"] for ln in (out / cell.dirname / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    # Same numbers as an uninterrupted run of the same config.
    ref = tmp_path / "ref"
    assert grid.run_cell(cell, ref, log=lambda m: None).status == "trained"
    a = json.loads((out / cell.dirname / "metrics.json").read_text())
    b = json.loads((ref / cell.dirname / "metrics.json").read_text())
    # Bit-identical (one flipped prediction moves accuracy by >= 1e-3): resumed and reference run in this process at one
    # thread (one_thread), so the float sums are the same; not meant to hold across thread counts.
    assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1e-6)
    assert a["membership"]["auc"] == pytest.approx(b["membership"]["auc"], abs=1e-6)


def test_cell_killed_before_its_first_checkpoint_restarts_and_locked_cells_are_skipped(tiny, tmp_path):
    (cell,) = grid.expand(tiny, "tiny", setups=["output"], baselines=False)
    out = tmp_path / "runs"
    # Died before the first checkpoint: a config and a half-written manifest, nothing else.
    (out / cell.dirname).mkdir(parents=True)
    cell.config.save(out / cell.dirname / "config.yaml")
    (out / cell.dirname / "manifest.csv").write_text("role,source_split,in")
    assert grid.cell_status(cell, out) == "todo"
    # Another grid holds the cell's lock: this one leaves the cell alone.
    import fcntl

    (out / ".locks").mkdir()
    with open(out / ".locks" / f"{cell.dirname}.lock", "w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert grid.run_cell(cell, out, log=lambda m: None).status == "busy"
    assert grid.run_cell(cell, out, log=lambda m: None).status == "trained"
    assert grid.cell_status(cell, out) == "done"
    assert sum(1 for _ in open(out / cell.dirname / "manifest.csv")) == 1 + 200 + 300 + 100 + 100 + 200
