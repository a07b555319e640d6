"""The results folder: tidy CSV tables, summary.json, meta.json and manifest.json.

- Writing (`write`, harness.results.swap): every version is complete before it is shown;
  the folder's path is a link swapped atomically, so at every instant it shows the old
  results or the new ones, and the next write clears what a killed one left behind.
- Ownership (`guard_target`, harness.results.guard and .manifest): only a folder the harness
  wrote, of the same kind, holding nothing else, is replaced without `--force`; some folders
  are never replaced.
- Reading (`read`, harness.results.read): every file checked as it is read, one line for
  anything damaged.
"""

from harness.results.guard import guard_target
from harness.results.manifest import (
    as_stored,
    changed_files,
    claim,
    damaged,
    dump_json,
    write_file,
)
from harness.results.names import (
    BENCH,
    EXPERIMENT,
    FIGURES,
    MARKER,
    TABLES,
    UNTOUCHED,
    ResultsError,
    ResultsInterrupted,
    interruption,
)
from harness.results.read import read, read_bench, read_json, read_table
from harness.results.swap import write

__all__ = ["BENCH", "EXPERIMENT", "FIGURES", "MARKER", "TABLES", "UNTOUCHED", "ResultsError",
           "ResultsInterrupted", "as_stored", "changed_files", "claim", "damaged", "dump_json",
           "guard_target", "interruption", "read", "read_bench", "read_json", "read_table",
           "write", "write_file"]
