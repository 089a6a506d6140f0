"""What recording a run's environment costs when it starts, against starting a run.

    python benchmarks/bench_provenance.py              # prints the CPU, then the table
    python benchmarks/bench_provenance.py --repeat 50

Measured in this process, each the median of ``--repeat`` calls: the git
commit (``git rev-parse`` and ``git status``), the uncommitted changes of
nnexp's checkout (``git diff HEAD`` of the package and its untracked files:
code.patch), the BLAS library, kernel family and threads (threadpoolctl), and
all of provenance(); against them, in the same run, starting a run folder
(``RunStore.create`` + ``TrackedRun.start`` + ``end``: config.yaml,
summary.json, code.patch, the index), which includes code.patch and its write.
What the run start costs depends on the checkout: this one's state is printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402 -- the benchmarks' own helper, next to this file

from nnexp.tracking import RunStore  # noqa: E402
from nnexp.tracking.api import Run as TrackedRun  # noqa: E402
from nnexp.tracking.provenance import blas_info, code_changes, git_commit, provenance  # noqa: E402
from nnexp.tracking.run import COMPLETED  # noqa: E402


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    machine.print_header("bench_provenance.py", ceiling=False, torch=False)
    changes = code_changes()
    print(f"checkout: {git_commit()}; code.patch "
          + (f"{changes.record['patch_bytes']:,} bytes, {len(changes.record['changed'])} files changed, "
             f"{len(changes.record['untracked'])} untracked" if changes else "none"))
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "runs")

        def start_run():
            tracked = TrackedRun.start(store.create("bench"), "bench", "train: {epochs: 1}\n", **provenance())
            tracked.end(COMPLETED)

        start_run()   # the index and threadpoolctl's first look, outside the figures
        rows = [("git commit", median_ms(git_commit, args.repeat)),
                ("uncommitted changes (code.patch)", median_ms(code_changes, args.repeat)),
                ("BLAS (threadpoolctl)", median_ms(blas_info, args.repeat)),
                ("provenance(), all of it", median_ms(provenance, args.repeat)),
                ("a run folder started and ended", median_ms(start_run, args.repeat))]
    whole = rows[-1][1]
    width = max(len(name) for name, _ in rows)
    print(f"{'':{width}}  {'ms':>7}  {'of a run start':>14}")
    for name, ms in rows:
        print(f"{name:{width}}  {ms:7.1f}  {ms / whole:14.0%}")


if __name__ == "__main__":
    main()
