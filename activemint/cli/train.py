"""``activemint train``: train a model with aMINT (or plainly with --mint off)."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from activemint.cli.options import add_train_args, config_from_args


def default_out(cfg) -> Path:
    tag = cfg.setup if cfg.mint else "plain"
    return Path("runs") / f"{cfg.dataset}-{cfg.arch}-{tag}-s{cfg.seed}"


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a model with aMINT (or plainly with --mint off)", description="Train an Enhanced Audited Model (classifier + MINT head) and evaluate it. Its messages also go to OUT/train.log.")
    add_train_args(t)
    t.add_argument("--out", help="run directory (default runs/<dataset>-<arch>-<setup>-s<seed>)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its last checkpoint")
    t.add_argument("--baseline", action="store_true", help="also train the same architecture without aMINT (into OUT/baseline) and compare "
                   "accuracy; on a CPU with >= 2 threads it trains beside the aMINT run, in a second process (its log: OUT/baseline/train.log)")
    t.add_argument("--baseline-after", action="store_true", help="with --baseline: train the baseline after the aMINT run, in this process")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=run)


class _LazyLog:
    """``OUT/train.log``, opened (appending, after a ``$ command`` line) at the first message only.

    So a run refused before it starts (a bad option, a missing data set) leaves no folder behind.
    """

    def __init__(self, path: Path, header: str) -> None:
        self.path, self.header, self.f = path, header, None

    def write(self, s: str) -> None:
        if not s:
            return
        if self.f is None:
            from activemint.io import make_dir

            make_dir(self.path.parent)
            self.f = open(self.path, "a")  # noqa: SIM115 (closed by close())
            self.f.write(self.header)
        self.f.write(s)
        self.f.flush()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


class _Tee:
    """A text stream writing to ``stream`` and to the run's train.log."""

    def __init__(self, stream, log: _LazyLog) -> None:
        self.stream, self.logf = stream, log

    def write(self, s: str) -> int:
        self.logf.write(s)
        return self.stream.write(s)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


@contextlib.contextmanager
def run_log(out: Path, header: str, resume: bool = False) -> Iterator[_LazyLog | None]:
    """Copy stdout (epoch lines, the summary) into ``OUT/train.log``, appending (a resume adds to it).

    Not when stdout already is that file (the baseline's child process, whose parent sends
    its output there), not on the non-zero ranks of torchrun, and not into a finished run
    that ``train`` will refuse.
    """
    from activemint.rundir import CONFIG, TRAIN_LOG
    from activemint.training.distributed import is_main

    path = out / TRAIN_LOG
    try:
        same = path.exists() and os.path.samestat(os.fstat(sys.stdout.fileno()), os.stat(path))
    except (OSError, ValueError, AttributeError):
        same = False
    if same or not is_main() or ((out / CONFIG).exists() and not resume):
        yield None
        return
    logf = _LazyLog(path, header)
    old = sys.stdout
    sys.stdout = _Tee(old, logf)
    try:
        yield logf
    finally:
        sys.stdout = old
        logf.close()


def run(args: argparse.Namespace) -> int:
    from activemint.cli.options import command_line
    from activemint.report import run_summary
    from activemint.training.baseline import train_with_baseline
    from activemint.training.distributed import is_main

    cfg = config_from_args(args, announce=False)  # an alias is announced by the Trainer's plan (also in train.log)
    out = Path(args.out) if args.out else default_out(cfg)
    with run_log(out, f"$ {command_line(args)}\n", args.resume) as logf:
        def log(m: str) -> None:
            print(m, file=sys.stderr)
            if logf is not None:
                logf.write(m + "\n")
        result, baseline = train_with_baseline(cfg, out, resume=args.resume, baseline=args.baseline,
                                               progress=not args.no_progress, log=log, parallel=not args.baseline_after)
        if is_main():  # under torchrun every rank trains; rank 0 alone reports
            print(run_summary(result.metrics, baseline))
    return 0
