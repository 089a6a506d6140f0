"""Mutation testing with Cosmic Ray: how many small wrong edits of a module its tests catch.

    python benchmarks/mutation.py [--modules stats,space] [--sample 40] [--seed 0]
                                  [--work DIR] [--out DIR] [--python PY] [--survivors-of DIR]

Cosmic Ray (``pip install cosmic-ray==8.7.0``, in a venv of its own; run this
script with that venv's python) edits a module one mutant at a time (``+`` made
``-``, ``<`` made ``<=``, a number changed, a condition negated, a loop run
zero times, ...) and runs the module's targeted tests (``MODULES`` below) on
each; a mutant the tests fail on is killed, one they pass is a survivor.

Never in this checkout: the script copies the repository's files (tracked and
untracked, not ignored) into ``--work`` (a fresh temporary folder by default)
and runs there, with PYTHONPATH pointing at the copy so that the tests, and the
processes they start, import the mutated copy.  It checks that first.

Sampling: Cosmic Ray makes up to a dozen mutants at one place (every other
binary operator for one ``+``).  For each module the script takes ``--sample``
places at random (``random.Random(seed)``, places in file order), one mutant
at each, also at random; the other mutants are marked skipped.  A module with
fewer places is taken whole.  Mutants on lines that only build a message
(``raise ...(f"...")``, ``log``) are left out as well: no behaviour test pins
the wording's punctuation.

Each module's tests run once unmutated first (they must pass); the per-mutant
timeout is 4 times that run plus 20 s, and a timed-out mutant counts as
killed (its own column).  One mutant at a time: the tool's local distributor.

Output: a table, per module, of places (sampled / total), killed, timeouts,
survivors and the score (killed + timeouts over the mutants run; a mutant
the tool cannot apply, "incompetent", is not counted). Every survivor's diff
goes into ``--out`` (``<module>.survivors.txt``, default .bench/mutation),
with each module's Cosmic Ray work database (``<module>.sqlite``).
``--survivors-of OUT`` runs the survivors an earlier ``--out`` recorded again
(the same mutants: for modules not changed since) and scores that sample
with the tests added meanwhile; ``--table`` prints the table of the modules
recorded in ``--out``; ``--deselect`` leaves out a test that fails unmutated
on this machine (a module whose tests fail unmutated is left out, and said so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult
except ImportError:
    sys.exit("benchmarks/mutation.py runs in Cosmic Ray's interpreter: python -m venv /tmp/cr && "
             "/tmp/cr/bin/pip install cosmic-ray==8.7.0, then /tmp/cr/bin/python benchmarks/mutation.py")

REPO = Path(__file__).resolve().parent.parent
TOOL = Path(sys.executable).with_name("cosmic-ray")

# module -> pytest arguments: the test files (and one -k selection, which pytest applies to all
# of them) that are meant to catch a wrong result of that module, the fastest ones that do
NN_CONV = ["tests/test_nn_gradcheck.py", "tests/test_nn_fast.py", "tests/test_nn_conv.py"]
# the browser tests (a Chromium start-up each) are left out; `nnexp ui` started as a process only for server.py
BROWSER = ("pages_load", "runs_page_sorts", "values_from_runs_show", "run_page_draws", "running_run_gains",
           "compare_and_sweep_pages", "compare_table_sorts")
UI_SERVER = ["tests/test_ui.py", "-k", " and ".join(f"not {name}" for name in BROWSER)]
UI = ["tests/test_ui.py", "-k", " and ".join(f"not {name}" for name in ("any_other_address",) + BROWSER)]
MODULES: dict[str, list[str]] = {
    "nnexp/compare/stats.py": ["tests/test_stats.py"],
    "nnexp/compare/significance.py": ["tests/test_significance.py", "tests/test_stats.py"],
    "nnexp/sweep/space.py": ["tests/test_sweep_spec.py"],
    "nnexp/nn/schedules.py": ["tests/test_nn_schedules.py"],
    "nnexp/nn/optim.py": ["tests/test_nn_optim.py"],
    "nnexp/nn/layers.py": ["tests/test_nn_gradcheck.py", "tests/test_nn_model.py"],
    "nnexp/config.py": ["tests/test_config.py"],
    "nnexp/compare/query.py": ["tests/test_query.py"],
    "nnexp/sweep/pruning.py": ["tests/test_search.py", "tests/test_sweep_spec.py", "-k",
                               "median_rule or hyperband_brackets or make_pruner or not_finite_does_not or "
                               "with_its_bracket or own_bracket_without or test_sweep_spec"],
    "nnexp/ui/folders.py": UI,
    "nnexp/checkpoint.py": ["tests/test_resume.py", "-k", "round_trips or failed_write or damaged_or_hostile or "
                            "another_config or does_not_fit or refuses_what or before_the_diagnostics or "
                            "damaged_metadata or unreadable_checkpoint or not_there_is_fine or engine_is_part"],
    "nnexp/nn/losses.py": ["tests/test_nn_gradcheck.py", "tests/test_nn_model.py"],
    "nnexp/nn/batchnorm.py": NN_CONV,
    "nnexp/nn/conv.py": NN_CONV,
    "nnexp/nn/pooling.py": NN_CONV,
    "nnexp/nn/model.py": ["tests/test_nn_model.py", "tests/test_nn_gradcheck.py"],
    "nnexp/nn/fast/layers.py": ["tests/test_nn_fast.py", "tests/test_nn_gradcheck.py"],
    "nnexp/nn/fast/optim.py": ["tests/test_nn_optim.py", "tests/test_nn_fast.py"],
    "nnexp/nn/fast/batchnorm.py": ["tests/test_nn_fast.py", "tests/test_nn_conv.py", "tests/test_nn_data_parallel.py"],
    "nnexp/nn/fast/conv.py": ["tests/test_nn_conv.py", "tests/test_nn_fast.py", "tests/test_nn_gradcheck.py"],
    "nnexp/nn/fast/pooling.py": ["tests/test_nn_fast.py", "tests/test_nn_conv.py"],
    "nnexp/nn/fast/winograd.py": ["tests/test_nn_winograd.py"],
    "nnexp/nn/fast/data_parallel.py": ["tests/test_nn_data_parallel.py"],
    "nnexp/ui/server.py": UI_SERVER,
    "nnexp/tracking/index.py": ["tests/test_index.py", "tests/test_store.py", "tests/test_query.py", "-k",
                                "test_index or test_store or trusted_index"],
    "nnexp/tracking/run.py": ["tests/test_run_lifecycle.py", "tests/test_store.py"],
    "nnexp/data/sources.py": ["tests/test_data_sources.py"],
    "nnexp/sweep/tpe.py": ["tests/test_search.py", "-k", "proposal_depends or start_up_points or "
                           "conditional_parameters_and_repeats or tpe_with_halving or only_values_the_space or "
                           "per_epoch"],
    "nnexp/train.py": ["tests/test_diagnostics.py", "tests/test_cli.py", "tests/test_resume.py", "tests/test_ema.py",
                       "-k", "copied_once or quiet_scheduled or run_writes or same_config or divergence or "
                       "early_stopping or ctrl_c_leaves or crash_is_recorded or ctrl_c_matches or kill_between or "
                       "crash_after_the_last or another_config or test_ema"],
}

NO_HYPOTHESIS = ["-p", "no:hypothesispytest"]   # its plugin's import is most of a small file's start-up
MARKER = ".nnexp-mutation-copy"                 # marks a --work folder this script may empty again
MESSAGE_LINES = ("raise ", "log.", "logger.", "warnings.warn(", "print(")


def copy_repository(work: Path) -> None:
    """The checkout's tracked and untracked (not ignored) files, into work."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def test_command(python: str, args: list[str], deselect: list[str]) -> str:
    uses_hypothesis = any("from hypothesis" in (REPO / a.split("::")[0]).read_text()
                          for a in args if a.startswith("tests/"))
    plugins = [] if uses_hypothesis else NO_HYPOTHESIS
    return shlex.join([python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *plugins, *args,
                       *[f"--deselect={test}" for test in deselect]])


def check_imports_the_copy(python: str, work: Path, env: dict) -> None:
    code = ("import nnexp, subprocess, sys; print(nnexp.__file__); "
            "print(subprocess.run([sys.executable, '-c', 'import nnexp; print(nnexp.__file__)'], "
            "capture_output=True, text=True).stdout.strip())")
    seen = subprocess.run([python, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                          check=True).stdout.split()
    if not all(Path(p).resolve().is_relative_to(work.resolve()) for p in seen) or len(seen) != 2:
        sys.exit(f"the tests would not import the copy in {work}: {seen}")


def message_line(work: Path, module: str, line: int) -> bool:
    text = (work / module).read_text().splitlines()[line - 1].strip()
    return text.startswith(MESSAGE_LINES)


def sample(db: WorkDB, work: Path, module: str, size: int, seed: int) -> tuple[int, int]:
    """Keep one mutant at each of `size` random places; mark the rest skipped. (kept, places)"""
    places: dict[tuple, list] = {}
    for item in db.work_items:
        mutation = item.mutations[0]
        if not message_line(work, module, mutation.start_pos[0]):
            places.setdefault(tuple(mutation.start_pos), []).append(item)
    rng = random.Random(f"{seed}:{module}")
    chosen = sorted(rng.sample(sorted(places), min(size, len(places))))
    keep = {rng.choice(places[p]).job_id for p in chosen}
    skip = [item.job_id for item in db.work_items if item.job_id not in keep]
    if skip:
        db.set_multiple_results(skip, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    return len(keep), len(places)


def survivor_keys(old: Path) -> set[tuple]:
    """(operator, occurrence) of every survivor an earlier run recorded (of an unchanged module)."""
    return {tuple(k) for k in json.loads(old.read_text())}


def keep_only(db: WorkDB, keys: set[tuple]) -> int:
    skip, kept = [], 0
    for item in db.work_items:
        m = item.mutations[0]
        if (m.operator_name, m.occurrence) in keys:
            kept += 1
        else:
            skip.append(item.job_id)
    if skip:
        db.set_multiple_results(skip, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    return kept


def tally(db: WorkDB) -> tuple[dict, list]:
    counts = {"killed": 0, "timeout": 0, "survived": 0, "incompetent": 0}
    survivors = []
    items = {item.job_id: item for item in db.work_items}
    for job_id, result in db.results:
        if result.worker_outcome in (WorkerOutcome.SKIPPED, WorkerOutcome.NO_TEST):
            continue
        if result.test_outcome == TestOutcome.SURVIVED:
            counts["survived"] += 1
            survivors.append((items[job_id].mutations[0], result.diff))
        elif result.test_outcome == TestOutcome.INCOMPETENT:
            counts["incompetent"] += 1
        elif result.output == "timeout":
            counts["timeout"] += 1
        else:
            counts["killed"] += 1
    return counts, survivors


def run_module(module: str, args: list[str], opts, work: Path, env: dict) -> dict | None:
    command = test_command(opts.python, args, opts.deselect)
    start = time.perf_counter()
    baseline = subprocess.run(shlex.split(command), cwd=work, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if baseline.returncode != 0:
        print(f"{module}: left out, its tests fail unmutated:\n{command}\n{baseline.stdout[-3000:]}", flush=True)
        return None
    name = module.replace("/", ".").removesuffix(".py")
    config = work / f"{name}.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(module)}\n"
        f"timeout = {4 * seconds + 20:.0f}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n"
        "[cosmic-ray.distributor]\nname = \"local\"\n")
    work_db = opts.out / f"{name}.sqlite"
    work_db.unlink(missing_ok=True)
    subprocess.run([str(TOOL), "init", str(config), str(work_db)], cwd=work, env=env, check=True)
    with use_db(str(work_db), WorkDB.Mode.open) as db:
        places = len({tuple(i.mutations[0].start_pos) for i in db.work_items})
        if opts.survivors_of:
            kept = keep_only(db, survivor_keys(opts.survivors_of / f"{name}.survivors.json"))
        else:
            kept, places = sample(db, work, module, opts.sample, opts.seed)
    print(f"{module}: {kept} mutants of {places} places; tests ({seconds:.1f} s unmutated): {command}",
          flush=True)
    start = time.perf_counter()
    subprocess.run([str(TOOL), "exec", str(config), str(work_db)], cwd=work, env=env, check=True)
    minutes = (time.perf_counter() - start) / 60
    with use_db(str(work_db), WorkDB.Mode.open) as db:
        counts, survivors = tally(db)
    keys = [(m.operator_name, m.occurrence) for m, _ in survivors]
    (opts.out / f"{name}.survivors.json").write_text(json.dumps(keys))
    (opts.out / f"{name}.survivors.txt").write_text(
        "".join(f"--- {m.operator_name} line {m.start_pos[0]}\n{diff}\n" for m, diff in survivors))
    if opts.survivors_of:  # the earlier sample's killed mutants stay killed: the same sample, scored again
        before = json.loads((opts.survivors_of / f"{name}.row.json").read_text())
        kept, places = before["kept"], before["places"]
        for key in ("killed", "timeout", "incompetent"):
            counts[key] += before[key]
    run = sum(counts.values()) - counts["incompetent"]
    score = (counts["killed"] + counts["timeout"]) / run if run else float("nan")
    row = {"module": module, "kept": kept, "places": places, "run": run, **counts,
           "score": score, "minutes": minutes}
    (opts.out / f"{name}.row.json").write_text(json.dumps(row))
    print(f"{module}: {counts}, score {score:.0%}, {minutes:.1f} min", flush=True)
    return row


def print_table(rows: list[dict]) -> None:
    print("\n| module | mutants (places sampled / places) | killed | timeouts | survived | score | minutes |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['module']}` | {r['kept']} / {r['places']} | {r['killed']} | {r['timeout']} | "
              f"{r['survived']} | {r['score']:.0%} | {r['minutes']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", help="comma-separated substrings of MODULES' keys (default: all)")
    parser.add_argument("--sample", type=int, default=40, help="places per module (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="where the mutated copy goes (default: a new temporary folder)")
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "mutation", help="work databases and survivors")
    parser.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"), help="runs the tests")
    parser.add_argument("--table", action="store_true", help="only print the table of the rows in --out")
    parser.add_argument("--deselect", action="append", default=[],
                        help="a test (node id) to leave out, such as one that fails unmutated on this machine")
    parser.add_argument("--survivors-of", type=Path, help="an earlier --out: run only its survivors again")
    opts = parser.parse_args()
    # a shell's background job (nohup ... &) ignores Ctrl-C, and so would the tests' children: some send it
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if opts.table:
        order = {m: i for i, m in enumerate(MODULES)}
        rows = [json.loads(p.read_text()) for p in opts.out.glob("*.row.json")]
        print_table(sorted(rows, key=lambda r: order.get(r["module"], len(order))))
        return
    wanted = opts.modules.split(",") if opts.modules else [""]
    modules = {m: a for m, a in MODULES.items() if any(w in m for w in wanted)}
    work = (opts.work or Path(tempfile.mkdtemp(prefix="nnexp-mutation-"))).resolve()
    if work == REPO or REPO.is_relative_to(work) or work.is_relative_to(REPO):
        sys.exit(f"--work {work} would mutate this checkout; give a folder outside it")
    if work.exists() and not (work / MARKER).exists():
        sys.exit(f"--work {work} exists and is not an earlier copy of this script's; give a new folder")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / MARKER).touch()
    copy_repository(work)
    opts.out = opts.out.resolve()
    opts.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(work)}
    check_imports_the_copy(opts.python, work, env)
    print(f"Cosmic Ray {subprocess.run([str(TOOL), '--version'], capture_output=True, text=True).stdout.strip()}"
          f", Python {platform.python_version()}, {os.cpu_count()} CPUs; copy in {work}; "
          f"sample {opts.sample} places per module, seed {opts.seed}", flush=True)
    rows = [run_module(m, a, opts, work, env) for m, a in modules.items()]
    print_table([r for r in rows if r])


if __name__ == "__main__":
    main()
