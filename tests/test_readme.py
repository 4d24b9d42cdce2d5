"""Every command README.md shows runs as written after the two set-up commands.

The shell commands of README's fenced ``bash`` / ``sh`` / ``text`` / ``console`` blocks are
extracted (a line, or each ``&&`` part of it, that starts with ``activemint`` or
``.venv/bin/activemint``, possibly after ``VAR=value`` assignments) and parsed with the CLI's
own parser, without training anything: ``--help`` forms must exit 0; ``train`` / ``compare``
commands must also give a valid TrainConfig.  Other commands README shows (``bash
scripts/setup.sh``, ``.venv/bin/python -m pytest``, ``source .venv/bin/activate``) must name
files that exist.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from activemint.cli import build_parser, config_from_args
from activemint.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
SHELL_BLOCKS = {"bash", "sh", "shell", "text", "console"}
CLI = ("activemint", ".venv/bin/activemint")


def shell_lines(markdown: str) -> list[str]:
    """Logical lines of the shell-like fenced blocks (backslash continuations joined)."""
    lines: list[str] = []
    for lang, body in FENCE.findall(markdown):
        if lang not in SHELL_BLOCKS:
            continue
        body = re.sub(r"\\\n\s*", " ", body)
        lines += [ln.strip().removeprefix("$ ").strip() for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return lines


def commands(line: str) -> list[list[str]]:
    """The ``&&`` / ``;``-separated commands of one line, as argv lists without leading VAR=value."""
    out = []
    for part in re.split(r"\s*(?:&&|;)\s*", line):
        argv = shlex.split(part)
        while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", argv[0]):
            argv = argv[1:]
        if argv:
            out.append(argv)
    return out


def cli_commands(markdown: str) -> list[list[str]]:
    return [argv for ln in shell_lines(markdown) for argv in commands(ln) if argv[0] in CLI]


def check_cli(argv: list[str]) -> None:
    """Parse one activemint command as the CLI would; raise on anything the CLI would reject."""
    args_ = argv[1:]
    parser = build_parser()
    if "--help" in args_ or "-h" in args_:
        with pytest.raises(SystemExit) as e:
            parser.parse_args(args_)
        assert e.value.code == 0, argv
        return
    try:
        args = parser.parse_args(args_)
    except SystemExit as e:  # argparse's way of saying "bad command line"
        raise AssertionError(f"README command does not parse: {shlex.join(argv)}") from e
    if args.command in ("train", "compare"):
        config_from_args(args)  # a valid TrainConfig (sizes, choices) without training


def test_readme_commands_parse_as_written():
    cmds = cli_commands(README.read_text())
    # README shows at least the main job, train/score/audit/report/evaluate/compare examples
    assert len(cmds) >= 6, cmds
    assert {c[1] for c in cmds if len(c) > 1} >= {"train", "evaluate", "score", "audit", "report", "compare"}
    for argv in cmds:
        check_cli(argv)


def test_readme_other_commands_name_existing_files():
    seen = set()
    for ln in shell_lines(README.read_text()):
        for argv in commands(ln):
            if argv[0] == "bash":
                assert (ROOT / argv[1]).is_file(), argv
                seen.add("bash")
            elif argv[0] == "source":
                assert argv[1] == ".venv/bin/activate", argv  # made by scripts/setup.sh
                seen.add("source")
            elif argv[0] == ".venv/bin/python":
                assert argv[1:3] == ["-m", "pytest"], argv
                seen.add("pytest")
            elif argv[0] not in CLI:
                raise AssertionError(f"README shows a command this test does not know how to check: {shlex.join(argv)}")
    assert {"bash", "pytest"} <= seen


def test_the_checker_rejects_what_the_cli_rejects():
    """The extraction and the check have teeth: a bad option, a bad choice, a bad size fail."""
    md = "text\n\n```bash\nbash scripts/setup.sh && .venv/bin/activemint train --epochs 3 --out x\n```\n"
    assert cli_commands(md) == [[".venv/bin/activemint", "train", "--epochs", "3", "--out", "x"]]
    check_cli(["activemint", "train", "--help"])
    for bad in (["activemint", "train", "--epochz", "3"], ["activemint", "train", "--setup", "middel"],
                ["activemint", "score"], ["activemint", "train", "--members", "0"]):
        with pytest.raises((AssertionError, ValueError, UserError)):
            check_cli(bad)
