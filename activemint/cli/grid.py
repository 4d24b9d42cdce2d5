"""``activemint grid``: run (a subset of) the paper's grid and tabulate it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from activemint.cli.checks import NON_NEGATIVE, POSITIVE
from activemint.cli.options import add_engine_args, add_runtime_args, engine_kwargs


def add_parser(sub) -> None:
    g = sub.add_parser("grid", help="run (a subset of) the paper's grid of data sets x archs x setups and tabulate it",
                       description="Run cells of configs/grid.yaml: skips cells already done (keyed by config hash), "
                                   "resumes interrupted ones, trains a plain baseline per data set x arch, and writes "
                                   "OUT/results.md + results.csv beside the paper's Table 1.")
    g.add_argument("--matrix", help="grid matrix file (default: the repository's configs/grid.yaml)")
    g.add_argument("--profile", default="paper", help="paper (full size) or cpu (shrunk sizes and epochs)")
    g.add_argument("--datasets", help="comma-separated data sets (default: the profile's)")
    g.add_argument("--archs", help="comma-separated architectures (default: all six)")
    g.add_argument("--setups", help="comma-separated setups among entry,middle,output,plain (default: all)")
    g.add_argument("--no-baselines", action="store_true", help="skip the plain (mint off) baseline cells")
    g.add_argument("--workers", type=POSITIVE, help="parallel worker processes of the local engine (default: one per GPU, 1 on CPU); "
                                               "with --engine ray and no --ray-address, the CPUs of the local Ray instance (default: all)")
    add_engine_args(g)
    g.add_argument("--only-index", type=NON_NEGATIVE, metavar="I",
                   help="run only cell I (0-based, in --dry-run's order) of the selection, in this process, and write "
                        "no table: one task of a SLURM array (sbatch --array=0-N-1; then --table-only)")
    g.add_argument("--out", help="folder of the cells' run directories (default runs/grid-<profile>)")
    g.add_argument("--no-estimate", action="store_true", help="start at once, without timing the cells first "
                   "(by default one probe per data set x arch x aMINT/plain prints the grid's expected wall time)")
    g.add_argument("--dry-run", action="store_true", help="list the selected cells and their status; train nothing")
    g.add_argument("--table-only", action="store_true", help="only (re)write the results table from finished cells")
    g.add_argument("--generate", nargs="?", const="all", help="write configs/<profile>/*.yaml from the matrix (all profiles, or a comma-separated list) and exit")
    add_runtime_args(g, data_root_help="folder holding the data sets (overrides each cell's data_root; default: "
                                       "each data set's default location)")
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from activemint import grid
    from activemint.rundir import GRID_FILES

    matrix = grid.load_matrix(args.matrix)

    def split(v: str | None) -> list[str] | None:
        return [x.strip() for x in v.split(",") if x.strip()] if v else None

    if args.generate:
        for profile in split(args.generate) if args.generate != "all" else sorted(matrix.profiles):
            paths = grid.generate_configs(matrix, profile)
            print(f"profile {profile}: {len(paths)} configs in {paths[0].parent}")
        return 0
    cells = grid.expand(matrix, args.profile, datasets=split(args.datasets), archs=split(args.archs),
                        setups=split(args.setups), baselines=not args.no_baselines)
    cells = with_runtime(cells, args)
    out = Path(args.out or f"runs/grid-{args.profile}")
    if args.only_index is not None:  # one cell, in this process: a SLURM array task (docs/scaling.md)
        if not 0 <= args.only_index < len(cells):
            raise grid.GridError(f"--only-index {args.only_index} is outside the selection's {len(cells)} cells (0..{len(cells) - 1})")
        if args.table_only:
            raise grid.GridError("--only-index runs one cell; write the table afterwards with --table-only alone")
        cells = [cells[args.only_index]]
        if not args.dry_run:
            outcome = grid.run_cell(cells[0], out, log=lambda m: print(m, flush=True))
            print(f"{outcome.cell}: {outcome.status} ({outcome.run_dir})")
            return 1 if outcome.status == "failed" else 0
    if args.dry_run:
        for c in cells:
            print(f"{grid.cell_status(c, out):8s} {c.name:45s} {c.key}  epochs {c.config.epochs}")
        return 0
    failed = []
    if not args.table_only:
        kw = engine_kwargs(args)
        if args.threads and kw.get("cpus_per_task") is None:  # --threads: the torch threads of each cell
            kw["cpus_per_task"] = args.threads
        outcomes = grid.run_grid(cells, out, workers=args.workers, estimate=not args.no_estimate, **kw)
        failed = [o for o in outcomes if o.status == "failed"]
        for o in failed:
            print(f"FAILED {o.cell}: {o.error}", file=sys.stderr)
    rows = grid.results_table(matrix, cells, out)
    md, csv = out / GRID_FILES["markdown"], out / GRID_FILES["csv"]
    grid.write_table(rows, md, csv)
    print(grid.table_markdown(rows))
    print(f"table written to {md} and {csv}", file=sys.stderr)
    return 1 if failed else 0


def with_runtime(cells: list, args: argparse.Namespace) -> list:
    """The cells with ``--device`` / ``--data-root`` applied when given (else each cell's own config)."""
    import dataclasses

    over = {k: v for k, v in (("device", args.device if args.device != "auto" else None), ("data_root", args.data_root))
            if v is not None}
    if not over:
        return cells
    return [dataclasses.replace(c, config=dataclasses.replace(c.config, **over)) for c in cells]
