"""The bit-sensitive tests under each OpenBLAS kernel family and BLAS thread count.

Many tests assert bit-identical results (docs/testing.md, "Which results are
bit for bit"). OpenBLAS picks its kernels by CPU, and a kernel family rounds
a matrix product's sums in its own way, differently for different matrix
shapes; so a test that compares two different computations exactly can pass
on one CPU and fail on another. This script runs the tests once per kernel
family (``OPENBLAS_CORETYPE``, for that command only) and thread count
(``OPENBLAS_NUM_THREADS``), asks threadpoolctl which kernel OpenBLAS really
loaded (a family the CPU cannot run falls back, or dies with SIGILL: shown as
such), and prints one row per setting.

    python benchmarks/blas_families.py                       # the quick list, every family, 1 and 2 threads
    python benchmarks/blas_families.py --full                # with the training tests (minutes per row)
    python benchmarks/blas_families.py --families Haswell,Zen --threads 2 --env OPENBLAS_L2_SIZE=512
    python benchmarks/blas_families.py tests/test_nn_conv.py -k chunks   # these pytest arguments instead

Exit status 1 if a test failed in some row, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import machine

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 3600   # seconds for one row
FAMILIES = ("default", "Haswell", "SkylakeX", "Zen", "Sandybridge", "Prescott")
#: the tests that compare two computations bit for bit, without the slow training runs
QUICK = ["tests/test_nn_conv.py", "tests/test_nn_fast.py", "tests/test_nn_forked.py", "tests/test_nn_model.py",
         "tests/test_nn_optim.py", "tests/test_nn_threads.py", "tests/test_nn_winograd.py",
         "tests/test_nn_data_parallel.py", "tests/test_nn_gradcheck.py", "-k", "not real_mnist"]
#: whole runs compared byte for byte: against the pinned code, diagnostics on/off, resumed, on the stand-in GPU
SLOW = ["tests/test_engines.py", "tests/test_diagnostics.py", "tests/test_resume.py", "tests/test_ema.py",
        "tests/test_gpu.py", "tests/test_cli.py::test_same_config_and_seed_give_identical_metrics"]

# what the kernel probe runs: one product (a kernel the CPU lacks dies here), then threadpoolctl's report
PROBE = """
import json, numpy as np, threadpoolctl
a = np.ones((64, 64), np.float32); a @ a
info = [i for i in threadpoolctl.threadpool_info() if i.get("internal_api") == "openblas"]
print(json.dumps(info[0] if info else {}))
"""


def environment(family: str, threads: str, extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env.update(extra, OPENBLAS_NUM_THREADS=threads)
    if family != "default":
        env["OPENBLAS_CORETYPE"] = family
    return env


def loaded_kernel(env: dict) -> tuple[str | None, str]:
    """(kernel name, what to show): the kernel OpenBLAS loaded and runs under env, or None and why not."""
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode < 0:
        return None, f"dies (signal {-done.returncode}): not for this CPU"
    if done.returncode != 0:
        return None, f"probe failed: {done.stderr.strip().splitlines()[-1:]}"
    info = json.loads(done.stdout)
    if not info:
        return None, "NumPy's BLAS is not OpenBLAS"
    return info["architecture"], f"{info['architecture']} ({info['num_threads']} threads)"


def run_tests(env: dict, pytest_args: list[str]) -> tuple[dict, list[str], float]:
    """({outcome: count}, failed test ids, seconds) of one pytest run."""
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args],
                              env=env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"error": 1}, [f"pytest still running after {TIMEOUT} s"], time.perf_counter() - start
    seconds = time.perf_counter() - start
    lines = done.stdout.splitlines()
    counts = {}
    for line in reversed(lines):
        found = re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", line)
        if found:
            counts = {word.rstrip("s") if word.startswith("error") else word: int(n) for n, word in found}
            break
    failed = [line.split()[1].split("::", 1)[-1] for line in lines if line.startswith(("FAILED ", "ERROR "))]
    if not counts:
        counts = {"error": 1}
        failed = [f"pytest exit {done.returncode}: {(done.stderr or done.stdout).strip()[-200:]}"]
    return counts, failed, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help="OPENBLAS_CORETYPE values, comma-separated ('default': unset)")
    parser.add_argument("--threads", default="1,2", help="OPENBLAS_NUM_THREADS values, comma-separated")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="more environment for every row, e.g. OPENBLAS_L2_SIZE=512")
    parser.add_argument("--full", action="store_true", help="add the whole-run tests (test_engines.py, ...)")
    args, pytest_args = parser.parse_known_args()
    extra = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"blas_families.py: --env {item!r}: expected KEY=VALUE", file=sys.stderr)
            return 2
        extra[key] = value
    pytest_args = pytest_args or QUICK + (SLOW if args.full else [])

    machine.print_header("blas_families.py", ceiling=False)
    print(f"tests: {shlex.join(pytest_args)}" + (f"; environment: {' '.join(args.env)}" if args.env else ""))
    header = f"{'OPENBLAS_CORETYPE':<18} {'threads':>7}  {'kernel loaded':<26} {'passed':>6} {'failed':>6} " \
             f"{'skipped':>7} {'seconds':>7}  failing"
    print(header)
    print("-" * len(header))
    any_failed = False
    for family in args.families.split(","):
        for threads in args.threads.split(","):
            env = environment(family, threads, extra)
            kernel, shown = loaded_kernel(env)
            if kernel is None:
                print(f"{family:<18} {threads:>7}  {shown}")
                continue
            counts, failed, seconds = run_tests(env, pytest_args)
            any_failed = any_failed or bool(failed) or counts.get("failed", 0) > 0
            print(f"{family:<18} {threads:>7}  {shown:<26} {counts.get('passed', 0):>6} "
                  f"{counts.get('failed', 0) + counts.get('error', 0):>6} {counts.get('skipped', 0):>7} "
                  f"{seconds:>7.0f}  {', '.join(failed) or '-'}", flush=True)
    return 1 if any_failed else 0


if __name__ == "__main__":
    sys.exit(main())
