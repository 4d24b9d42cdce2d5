"""The ``activemint`` command line: one module per command, each calling only the library.

Each command module has ``add_parser(sub)`` (its options) and a function the parser calls
with the parsed arguments.  :func:`main` owns the error policy: one line and exit status 2
on a user mistake, 1 on anything unexpected, 130 on Ctrl-C; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from activemint.cli import (
    audit,
    compare,
    edits,
    evaluate,
    grid,
    lists,
    power,
    report,
    robustness,
    score,
    train,
)
from activemint.cli.options import add_train_args, config_from_args
from activemint.errors import UserError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never fetch weights from the hub at run time

#: The commands, in the order ``activemint --help`` lists them.
COMMANDS = (train, evaluate, score, grid, audit, report, compare, robustness, edits, lists, power)

__all__ = ["COMMANDS", "add_train_args", "build_parser", "config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error instead of one line")
    p = _Parser(prog="activemint", description="Active Membership Inference Test: train auditable classifiers and test which data they were trained on.")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error instead of one line")
    from activemint import __version__

    p.add_argument("--version", action="version", version=f"activemint {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add = sub.add_parser

    def add_parser(name: str, **kw):  # every subcommand takes --debug too (before or after its name)
        return _add(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    for command in COMMANDS:
        command.add_parser(sub)
    p.set_defaults(subparsers=sub.choices)
    return p


def fit_advice(message: str, options: set[str]) -> str:
    """``message`` with its advice to pass options the command does not have taken out.

    The data layer advises "pass --data-root (root=...) or --download" whatever the caller;
    a command without ``--download`` (``score``, ``audit``) must not suggest it.
    """
    def keep(m: re.Match) -> str:
        flags = [f for f in re.findall(r"--[a-z][a-z0-9-]*", m.group(0)) if f in options]
        return f"pass {' or '.join(flags)}" if flags else ""

    out = re.sub(r"pass --[a-z][a-z0-9-]*(?: \(root=\.\.\.\))?(?: or --[a-z][a-z0-9-]*)*", keep, message)
    out = re.sub(r";\s*;", ";", out)
    out = re.sub(r"[;,]\s*(?=\()", " ", out)
    return re.sub(r"[;,]\s*$", "", out.strip())


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``activemint <cmd>: error: ...`` and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def one_line(e: BaseException) -> str:
    """An exception's message on one line (newlines folded); OSErrors name their file."""
    if isinstance(e, OSError) and not isinstance(e, UserError) and e.strerror:
        files = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        msg = f"{files}: {e.strerror}" if files else e.strerror
    else:
        msg = str(e) or type(e).__name__
    msg = " ".join(msg.split())
    # never pass on a library's advice to load untrusted files unsafely (torch: weights_only=False)
    return re.sub(r"[^.;]*weights_only[^.;]*(False|false)[^.;]*[.;]?", "", msg).strip() or type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    0 on success; 2 with one line ``activemint <cmd>: error: ...`` on a user mistake (bad
    option, config, input file or run directory) or an environment problem the user can fix
    (a file that cannot be read or written); 1 with one line on anything unexpected; 130 on
    Ctrl-C.  ``--debug`` re-raises instead, showing the traceback.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the full command, for the reports to record (activemint.cli.options.command_line)
    prog = f"activemint {args.command}"
    sub = args.subparsers[args.command]
    options = {o for a in sub._actions for o in a.option_strings}
    debug = bool(getattr(args, "debug", False))
    try:
        threads = getattr(args, "threads", None)
        if threads is not None:
            if threads < 1:
                raise UserError(f"--threads must be >= 1, got {threads}")
            import torch

            torch.set_num_threads(threads)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print("\ninterrupted; the last finished epoch is checkpointed, continue with --resume", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
            PermissionError, ValueError) as e:
        if debug:
            raise
        print(f"{prog}: error: {fit_advice(one_line(e), options)}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only file system, I/O error: the environment, not a bug
        if debug:
            raise
        print(f"{prog}: error: {fit_advice(one_line(e), options)}", file=sys.stderr)
        return 2
    except MemoryError:
        if debug:
            raise
        print(f"{prog}: error: out of memory (try fewer samples, a smaller --batch-size or another --device)", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line, non-zero; --debug shows where
        if debug:
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {one_line(e)} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1

