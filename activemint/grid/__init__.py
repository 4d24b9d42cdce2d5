"""The paper's grid (data sets x architectures x setups) as configuration, and a runner for it.

One small matrix file (``configs/grid.yaml``) describes the grid: the data sets with their
paper sizes, the architectures, the setups, the shared optimisation settings, and *profiles*
(``paper``: the paper's protocol; ``cpu``: sizes and epochs shrunk for a CPU).  From it:

* :func:`expand` lists the cells of a profile (one :class:`Cell` per data set x arch x setup,
  plus one plain baseline, ``mint: false``, per data set x arch, so the table can show the
  audited accuracy of the same model trained without aMINT);
* :func:`generate_configs` writes one ``TrainConfig`` YAML per cell
  (``configs/<profile>/<dataset>-<arch>-<setup>.yaml``); the files are generated, never
  edited by hand (a test checks that the committed files equal the generator's output);
* :func:`run_grid` trains a selection of cells, each into ``OUT/<cell name>-<config hash>``:
  a cell whose directory holds ``metrics.json`` is done and skipped; one with a checkpoint is
  resumed (``Trainer.run(resume=True)``); one that died before its first checkpoint is
  restarted.  Cells run as tasks of an engine (:mod:`activemint.engine`: local worker
  processes, one per GPU when there are GPUs, else ``workers``, default 1; or Ray tasks on
  a local instance or a cluster) and a lock per cell keeps two grids from training the same cell;
* :func:`results_table` / :func:`write_table` put the paper's figures (Table 1) beside ours.

Modules: :mod:`activemint.grid.matrix` (matrix, cells, configs), :mod:`activemint.grid.runner`
(the runner) and :mod:`activemint.grid.table` (the table); everything is importable from here.

>>> from activemint.grid import load_matrix, expand
>>> cells = expand(load_matrix(), "paper")
>>> len([c for c in cells if c.mint]), len([c for c in cells if not c.mint])
(90, 30)
"""
from activemint.grid.matrix import (
    DEFAULT_MATRIX,
    GENERATED_HEADER,
    PLAIN,
    Cell,
    GridError,
    Matrix,
    cell_config,
    cell_status,
    config_hash,
    expand,
    generate_configs,
    load_matrix,
    render_config,
)
from activemint.grid.runner import (
    CellOutcome,
    estimate_grid,
    run_cell,
    run_grid,
)
from activemint.grid.table import (
    TABLE_COLUMNS,
    paper_table,
    results_table,
    table_markdown,
    write_table,
)

__all__ = [
    "DEFAULT_MATRIX",
    "GENERATED_HEADER",
    "PLAIN",
    "TABLE_COLUMNS",
    "Cell",
    "CellOutcome",
    "GridError",
    "Matrix",
    "cell_config",
    "cell_status",
    "config_hash",
    "estimate_grid",
    "expand",
    "generate_configs",
    "load_matrix",
    "paper_table",
    "render_config",
    "results_table",
    "run_cell",
    "run_grid",
    "table_markdown",
    "write_table",
]
