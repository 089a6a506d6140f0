"""The machine a benchmark runs on, as every benchmark prints it at the top.

CPU model and cores, Python, NumPy and its BLAS, PyTorch (an optional
baseline, never an nnexp dependency), whether the packages are the versions
of constraints.txt, and the float32 matrix-multiply
ceiling: GFLOP/s of square ``n x n`` float32 matmuls (2 n^3 FLOPs each),
the best of a few after a warm-up, measured in the calling process with the
BLAS threads it runs with.  Speed figures are only comparable with a ceiling
measured in the same run: the CPU differs from machine to machine and a
shared machine's speed drifts from minute to minute.

    machine.print_header("bench_cnn.py", threads=2)       # header + ceilings
    sampler = machine.CeilingSampler(threads=2); sampler.sample()  # more samples later

It imports NumPy: a benchmark that pins the BLAS threads imports blas_threads first.
"""

from __future__ import annotations

import ctypes
import datetime
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

CEILING_SIZE = 2048      # large enough for OpenBLAS and MKL to run at full speed on one core
CEILING_REPEATS = 5
SAMPLE_REPEATS = 3       # per sample taken between benchmark rounds: cheap, still past the warm-up
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
ISA_FLAGS = (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("amx_tile", "AMX"))
CONSTRAINTS = Path(__file__).resolve().parent.parent / "constraints.txt"  # the versions CI tests with


def cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The CPU's model name: /proc/cpuinfo's "model name", else what the platform module says."""
    return cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_details() -> str:
    """Family/model numbers and the vector extensions that set a matmul's peak, e.g.
    "family 6 model 143, AVX2 AVX-512 AMX" (generic model names hide the generation)."""
    info = cpuinfo()
    flags = set(info.get("flags", "").split())
    parts = []
    if "cpu family" in info and "model" in info:
        parts.append(f"family {info['cpu family']} model {info['model']}")
    isa = " ".join(name for flag, name in ISA_FLAGS if flag in flags)
    if isa:
        parts.append(isa)
    return ", ".join(parts)


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def numpy_blas() -> str:
    """NumPy's BLAS as its build reports it, e.g. "scipy-openblas 0.3.31"."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except (TypeError, KeyError):  # NumPy < 1.26 prints its config and returns None
        return "unknown BLAS"
    return f"{blas.get('name', 'unknown BLAS')} {blas.get('version', '')}".strip()


def openblas_runtime() -> tuple[str, int] | None:
    """(kernel OpenBLAS chose for this CPU, its thread count), or None where NumPy's
    BLAS is not an OpenBLAS this process can ask."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
    except OSError:
        return None
    prefixes = ("scipy_openblas_", "openblas_")
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in prefixes:
            for suffix in ("64_", ""):
                corename = getattr(lib, f"{prefix}get_corename{suffix}", None)
                threads = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                if corename is not None and threads is not None:
                    corename.restype = ctypes.c_char_p
                    return corename().decode(errors="replace"), int(threads())
    return None


def blas_threads_note() -> str:
    """How NumPy's BLAS thread count was set."""
    for var in BLAS_THREAD_VARS:
        if var in os.environ:
            return f"{var}={os.environ[var]}"
    return "no *_NUM_THREADS set: the BLAS default"


def torch_version() -> str | None:
    """PyTorch's version, or None where it is not installed (read without importing it)."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def numpy_matmul_gflops(n: int = CEILING_SIZE, repeats: int = CEILING_REPEATS) -> float:
    """Best GFLOP/s of ``repeats`` float32 n x n matmuls after one warm-up, with
    the BLAS threads this process has."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def torch_matmul_gflops(threads: int, n: int = CEILING_SIZE, repeats: int = CEILING_REPEATS) -> float | None:
    """The same with PyTorch on ``threads`` threads (its thread count is left as it
    was); None where PyTorch is not installed."""
    if torch_version() is None:
        return None
    import torch  # an optional baseline: imported only where installed and asked for

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a, b = torch.rand((n, n), generator=gen), torch.rand((n, n), generator=gen)
        out = torch.empty((n, n))
        torch.mm(a, b, out=out)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return 2 * n ** 3 / best / 1e9


class CeilingSampler:
    """Float32 matmul ceilings sampled again and again during a benchmark, so that
    its speed figures can be set against the machine's speed of the same minutes.

    ``sample()`` measures NumPy (and PyTorch with ``torch=True`` where it is
    installed) once; ``median(lib)`` and ``best(lib)`` summarise the samples
    ("numpy" or "torch"), ``peak()`` is the higher of the two libraries' medians
    and ``best_peak()`` the highest sample."""

    def __init__(self, threads: int, torch: bool = True, n: int = CEILING_SIZE):
        self.threads, self.n = threads, n
        self.samples: dict[str, list[float]] = {"numpy": [], "torch": []}
        self.torch = torch and torch_version() is not None

    def add(self, ceilings: dict) -> None:
        """Count a measurement made elsewhere ({"numpy": ..., "torch": ...}, as
        print_header returns it)."""
        for lib, value in ceilings.items():
            if value is not None:
                self.samples[lib].append(value)

    def sample(self, repeats: int = SAMPLE_REPEATS) -> None:
        self.samples["numpy"].append(numpy_matmul_gflops(self.n, repeats))
        if self.torch:
            self.samples["torch"].append(torch_matmul_gflops(self.threads, self.n, repeats))

    def median(self, lib: str = "numpy") -> float | None:
        return statistics.median(self.samples[lib]) if self.samples[lib] else None

    def best(self, lib: str = "numpy") -> float | None:
        return max(self.samples[lib]) if self.samples[lib] else None

    def peak(self) -> float:
        return max(v for v in (self.median("numpy"), self.median("torch")) if v is not None)

    def best_peak(self) -> float:
        return max(max(s) for s in self.samples.values() if s)

    def summary(self) -> str:
        """One line: each library's median and range over the samples."""
        parts = []
        for lib, name in (("numpy", "NumPy"), ("torch", "PyTorch")):
            s = self.samples[lib]
            if s:
                parts.append(f"{name} {statistics.median(s):.1f} GFLOP/s (median of {len(s)}, "
                             f"{min(s):.1f}-{max(s):.1f})")
        return "; ".join(parts)


def constraints_note(path: Path = CONSTRAINTS) -> str:
    """Whether the installed packages are the versions ``path`` pins, and which are not."""
    pinned = {}
    for line in path.read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pinned[name] = version
    differ = []
    for name, version in pinned.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "not installed"
        if installed != version:
            differ.append(f"{name} {installed} (pinned {version})")
    if not differ:
        return f"the {len(pinned)} versions of {path.name}"
    return f"{len(differ)} of the {len(pinned)} versions of {path.name} differ: {', '.join(differ)}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def print_header(title: str, threads: int | None = None, ceiling: bool = True, torch: bool = True) -> dict:
    """Print the machine block that starts every benchmark's output; returns the
    measured ceilings {"numpy": GFLOP/s, "torch": GFLOP/s or None} (empty without
    ``ceiling``, for benchmarks that do no matrix math).  ``threads`` is the
    PyTorch thread count for its ceiling (default: the cores); NumPy's BLAS runs
    with the threads it was started with (see blas_threads.py)."""
    threads = threads or cores()
    now = datetime.datetime.now().astimezone().isoformat(sep=" ", timespec="seconds")
    details = cpu_details()
    runtime = openblas_runtime()
    blas = numpy_blas()
    if runtime:
        blas += f" ({runtime[0]} kernels, {plural(runtime[1], 'thread')}; {blas_threads_note()})"
    else:
        blas += f" ({blas_threads_note()})"
    tv = torch_version()
    print(f"== {title}, {now} ==")
    print(f"CPU      {cpu_model()}" + (f" ({details})" if details else "") + f", {plural(cores(), 'core')} usable")
    print(f"Python   {platform.python_version()} ({sys.implementation.name}), {platform.system()} "
          f"{platform.release()}")
    print(f"NumPy    {np.__version__}, BLAS {blas}")
    print(f"PyTorch  {tv if tv else 'not installed'}")
    print(f"Packages {constraints_note()}")
    ceilings: dict = {}
    if ceiling:
        ceilings["numpy"] = numpy_matmul_gflops()
        ceilings["torch"] = torch_matmul_gflops(threads) if torch else None
        line = f"NumPy {ceilings['numpy']:.1f} GFLOP/s"
        if ceilings["torch"] is not None:
            line += f", PyTorch {ceilings['torch']:.1f} GFLOP/s ({plural(threads, 'thread')})"
        print(f"float32 matmul ceiling ({CEILING_SIZE}x{CEILING_SIZE}, best of {CEILING_REPEATS} after a "
              f"warm-up): {line}")
    print(flush=True)
    return ceilings
