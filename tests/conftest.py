"""Shared fixtures: real Fashion-MNIST runs trained once per test session.

Training runs are cached under ``<repo>/.cache/test-runs/<key>`` (or ``$ACTIVEMINT_TEST_CACHE``)
so that repeated local test sessions reuse them; CI starts from a clean clone and trains them
once.  The key hashes the run's settings, the run-directory format (``RUN_FORMAT``) and
:data:`FIXTURE_VERSION`, not the package source: editing code that does not change what
training produces no longer retrains every fixture.  **Bump FIXTURE_VERSION** in a change that
alters what a trained run holds (its weights, splits or figures); the run format's own version
changes whenever the files' layout does.  A file lock makes concurrent sessions that share a
cache train each run once.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import activemint  # noqa: E402,F401  (its thread policy must be in place before any test imports torch)

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
CACHE = Path(os.environ.get("ACTIVEMINT_TEST_CACHE") or Path(__file__).resolve().parent.parent / ".cache" / "test-runs")

# A small but real aMINT run: strong enough that membership is clearly detectable.
AUDITED_RUN = dict(
    dataset="fashion-mnist", arch="small_cnn", setup="entry", mint=True, members=1000, external=4000,
    validation=500, calibration=1000, eval_nonmembers=2000, epochs=25, lr=1e-3, seed=0,
    select="last",  # the tests' figures assume the fully trained head, whatever the default rule
)


#: Version of what the fixture runs hold: bump it when training's output changes.
FIXTURE_VERSION = 1


def load_benchmark(name: str):
    """The module ``benchmarks/<name>.py`` (benchmarks/ is a folder of scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def require_fashion_mnist() -> None:
    if not FASHION_ROOT.is_dir():
        pytest.skip(f"Fashion-MNIST not installed at {FASHION_ROOT} (apt-get install dataset-fashion-mnist)")


def trained_run(**overrides) -> Path:
    """Train (or reuse) a run with AUDITED_RUN's settings updated by ``overrides``."""
    from filelock import FileLock

    from activemint.rundir import RUN_FORMAT
    from activemint.training import TrainConfig, Trainer

    require_fashion_mnist()
    params = {**AUDITED_RUN, **overrides}
    import torch

    # The thread count changes float sums, so a run trained at another count holds other figures (tests compare
    # some of them to 1e-9 against what they recompute in this process).
    identity = {"params": params, "format": RUN_FORMAT, "fixture_version": FIXTURE_VERSION, "threads": torch.get_num_threads()}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    run_dir = CACHE / key
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / f"{key}.lock")):
        if not (run_dir / "metrics.json").is_file():
            shutil.rmtree(run_dir, ignore_errors=True)
            Trainer(TrainConfig(**params), run_dir, progress=False, log=lambda m: None).run()
    return run_dir


#: The smallest real aMINT run: what the run-directory and reliability tests copy and tamper with.
TINY_RUN = dict(dataset="fashion-mnist", data_root=str(FASHION_ROOT), arch="small_cnn", setup="entry", members=200,
                external=200, validation=100, calibration=300, eval_nonmembers=100, test_samples=200, epochs=2, lr=1e-3,
                seed=5)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """TINY_RUN trained once per session into a fresh folder (tests copy it before changing anything)."""
    from activemint.training import TrainConfig, Trainer

    require_fashion_mnist()
    out = tmp_path_factory.mktemp("tiny") / "run"
    Trainer(TrainConfig(**TINY_RUN), out, progress=False, log=lambda m: None).run()
    return out


def refused_in_one_line(capsys, rc: int, *needles: str) -> str:
    """A command returned ``rc`` 2 with exactly one stderr line holding every needle; the line."""
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def train_refused_in_one_line(tmp_path: Path, capsys, extra: list[str], *needles: str) -> None:
    """``activemint train`` on a tiny Fashion-MNIST run with ``extra`` options exits 2 with one stderr
    line holding every needle, and writes no run directory."""
    from activemint.cli import main

    args = ["train", "--dataset", "fashion-mnist", "--data-root", str(FASHION_ROOT), "--members", "200", "--epochs", "1",
            "--out", str(tmp_path / "run"), *extra]
    try:
        rc = main(args)
    except SystemExit as e:  # argparse's choices: its own exit, one line too
        rc = e.code
    refused_in_one_line(capsys, rc, *needles)
    assert not (tmp_path / "run").exists()


def drifted_fashion_copy(root: Path, members, n: int = 7) -> Path:
    """A copy of Fashion-MNIST at ``root`` whose training images at the first ``n`` of ``members`` have
    one pixel inverted (the raw idx file replaces the .gz): a data root that drifted under a run."""
    root.mkdir()
    for f in FASHION_ROOT.glob("*.gz"):
        shutil.copy2(f, root / f.name)
    name = "train-images-idx3-ubyte"
    raw = bytearray(gzip.decompress((FASHION_ROOT / f"{name}.gz").read_bytes()))
    (root / f"{name}.gz").unlink()
    for i in members[:n]:
        raw[16 + int(i) * 784 + 400] ^= 0xFF
    (root / name).write_bytes(bytes(raw))
    return root


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """Restore torch's thread count after each test: ``main([..., "--threads", "1"])`` in-process sets it for
    the whole process, and every later test (and fixture run) would silently run at one thread (test_baseline
    skips below two)."""
    import torch

    n = torch.get_num_threads()
    yield
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@pytest.fixture(scope="session")
def audited_run_dir() -> Path:
    """A finished aMINT run (small_cnn, entry setup) on real Fashion-MNIST."""
    return trained_run()


@pytest.fixture(scope="session")
def plain_run_dir() -> Path:
    """The same architecture and splits trained without aMINT."""
    return trained_run(mint=False)


#: Fixtures that train (or reuse) a real run: every test that needs one is ``slow``.
TRAINING_FIXTURES = {"audited_run_dir", "plain_run_dir", "small_runs"}

#: Tests that train (or resume, or re-run the CLI on) their own runs for more than a few
#: seconds of CPU (``pytest --durations``): also ``slow``.  A name here that its file no
#: longer has is an error, so the list cannot silently rot.
SLOW_TESTS = {
    "test_training.py": ("test_resume_continues_to_identical_result", "test_same_seed_same_numbers_and_manifest",
                         "test_default_selection_keeps_the_best_validation_epoch_and_says_so",
                         "test_run_saved_before_head_norm_still_loads", "test_select_last_and_val_task_on_a_plain_run"),
    "test_grid.py": ("test_grid_cli_runs_skips_done_cells_and_writes_the_table", "test_interrupted_cell_resumes_to_the_same_result",
                     "test_cell_killed_before_its_first_checkpoint_restarts_and_locked_cells_are_skipped"),
    "test_rundir.py": ("test_audit_force_replaces_only_a_previous_audit", "test_interrupted_final_save_reads_as_incomplete",
                       "test_disk_full_gives_one_line_and_no_temporary_file", "test_read_only_output_folders",
                       "test_every_written_file_has_ordinary_permissions", "test_resume_of_a_complete_run_reproduces_it"),
    "test_transforms.py": ("test_plain_twin_of_a_robust_run_trains_on_the_same_views",),
    "test_reliability.py": ("test_sigkill_while_writing_leaves_old_absent_or_complete_output",
                            "test_weights_swapped_for_another_runs_with_the_binding_removed_are_refused",
                            "test_run_file_fuzz_through_the_commands",
                            "test_run_file_fuzz_reads_back_exactly_or_refuses_in_one_line",
                            "test_sigkill_at_random_instants_leaves_old_absent_or_complete_output",
                            "test_robustness_saved_scores_are_in_the_folder_when_it_appears",
                            "test_an_audit_marker_with_unknown_or_path_like_entries_is_not_replaced"),
    "test_auditor_view.py": ("test_alias_is_announced_and_stored_canonical_and_run_leaves_log_not_lock",),
}


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` every test that needs a trained run (directly or through another fixture)
    and every test in :data:`SLOW_TESTS`.

    ``pytest -m "not slow"`` is then the fast subset: no test in it trains more than a few
    seconds, and it never waits for a session run to be trained.
    """
    modules = {}
    for item in items:
        file, name = item.path.name, getattr(item, "originalname", item.name)
        modules.setdefault(file, getattr(item, "module", None))
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())) or name in SLOW_TESTS.get(file, ()):
            item.add_marker(pytest.mark.slow)
    for file, names in SLOW_TESTS.items():
        missing = [n for n in names if modules.get(file) is not None and not hasattr(modules[file], n)]
        if missing:
            raise pytest.UsageError(f"tests/conftest.py SLOW_TESTS names tests that {file} does not have: {missing}")
