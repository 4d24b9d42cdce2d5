"""How activemint writes files: atomically, under a lock, with digests, and with kill points for tests.

* :mod:`~activemint.io.atomic`: every file is written atomically: a temporary file in the same
  folder, fsync, ``os.replace``, fsync of the folder; files get ordinary modes (0644 under the
  usual umask).  A reader sees a file's old content or its new content, never a mix.  A folder
  is written complete beside its final name and renamed into place (:func:`commit_dir`).
* :mod:`~activemint.io.outputs`: a command's output (a file, or a folder of files) is built
  beside its final path and renamed into place; whatever a killed writer left is removed by the
  next writer (:func:`clean_stale`).  Every CSV cell passes :func:`csv_cell`.
* :mod:`~activemint.io.lock`: the exclusive writer lock (filelock) that names its holder.
* :mod:`~activemint.io.digest`: SHA-256 of JSON, of a file, of an array.
* :mod:`~activemint.io.kill`: kill points for tests.  ``ACTIVEMINT_KILL_AT=NAME:N`` makes the
  process SIGKILL itself the N-th time it passes the point NAME (``NAME:N:stop`` sends SIGSTOP
  instead, so a test can resume it with SIGCONT).  Points: ``write`` (after every file or
  checkpoint-directory write), ``partial`` (a file's new content is on disk but not yet renamed
  into place), ``step`` (after every optimisation step), ``epoch`` (after an epoch's checkpoint
  is committed and older ones pruned).  ``write@NAME`` / ``partial@NAME`` count only the
  passings for the file (or checkpoint directory) NAME, e.g.
  ``ACTIVEMINT_KILL_AT=write@train_state.pt:2``.  Unset, a kill point costs one comparison.

Write errors are one-line :class:`activemint.errors.RunWriteError`; a held lock is a
:class:`activemint.errors.RunLockedError`.  What a run directory holds is :mod:`activemint.rundir`.
"""
from activemint.io.atomic import (
    atomic_json,
    atomic_write,
    atomic_write_via,
    commit_dir,
    fsync_dir,
    fsync_files,
    make_dir,
    write_error,
)
from activemint.io.digest import array_digest, file_sha256, sha256_json
from activemint.io.kill import kill_passes, kill_point, reset_kill_points
from activemint.io.lock import describe_holder, hold_lock, lock_holder
from activemint.io.outputs import REPORT, check_output_dir, clean_stale, csv_cell, csv_row, output_dir, write_output

__all__ = [
    "REPORT", "array_digest", "atomic_json", "atomic_write", "atomic_write_via", "check_output_dir", "clean_stale",
    "commit_dir", "csv_cell", "csv_row", "describe_holder", "file_sha256", "fsync_dir", "fsync_files", "hold_lock", "kill_passes", "kill_point",
    "lock_holder", "make_dir", "output_dir", "reset_kill_points", "sha256_json", "write_error", "write_output",
]
