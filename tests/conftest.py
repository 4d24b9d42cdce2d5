"""Shared fixtures: real Fashion-MNIST runs trained once per test session.

Training runs are cached under ``<repo>/.cache/test-runs/<key>`` so that repeated local test
sessions reuse them; CI starts from a clean clone and trains them once.  The key hashes the
run's settings and the package's source (every ``activemint/**/*.py``), so a run trained by
older code is never reused: change the code and the fixtures train again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import activemint  # noqa: E402,F401  (its thread policy must be in place before any test imports torch)

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "test-runs"

# A small but real aMINT run: strong enough that membership is clearly detectable.
AUDITED_RUN = dict(
    dataset="fashion-mnist", arch="small_cnn", setup="entry", mint=True, members=1000, external=4000,
    validation=500, calibration=1000, eval_nonmembers=2000, epochs=25, lr=1e-3, seed=0,
    select="last",  # the tests' figures assume the fully trained head, whatever the default rule
)


def _source_hash() -> str:
    """SHA-256 of the package source: every .py file under activemint/, by relative path and bytes."""
    root = Path(activemint.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


SOURCE_HASH = _source_hash()


def require_fashion_mnist() -> None:
    if not FASHION_ROOT.is_dir():
        pytest.skip(f"Fashion-MNIST not installed at {FASHION_ROOT} (apt-get install dataset-fashion-mnist)")


def trained_run(**overrides) -> Path:
    """Train (or reuse) a run with AUDITED_RUN's settings updated by ``overrides``."""
    from activemint.training import Trainer, TrainConfig

    require_fashion_mnist()
    params = {**AUDITED_RUN, **overrides}
    key = hashlib.sha256(json.dumps({"params": params, "source": SOURCE_HASH}, sort_keys=True).encode()).hexdigest()[:16]
    run_dir = CACHE / key
    if not (run_dir / "metrics.json").is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        Trainer(TrainConfig(**params), run_dir, progress=False, log=lambda m: None).run()
    return run_dir


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


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` every test that needs a trained run (directly or through another fixture).

    ``pytest -m "not slow"`` is then the fast subset: no test in it trains more than a few
    seconds, and it never waits for a session run to be trained.
    """
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
