"""Benchmark: what the per-layer diagnostics (diagnostics.csv) cost, as a fraction of an epoch.

    python benchmarks/bench_diagnostics.py                     # configs/mlp.yaml and configs/cnn.yaml
    python benchmarks/bench_diagnostics.py configs/mlp.yaml train.epochs=3

Each case is one `nnexp run` (a fresh process, the real training loop) into a
temporary store; summary.json records the seconds the diagnostics took
(``diagnostics_seconds``: the probe's forward pass, the statistics and writing
the rows) apart from the epochs' own seconds (``train_seconds``). The table
shows both per epoch and their ratio. The defaults: configs/mlp.yaml for 2
epochs and configs/cnn.yaml for 1 epoch, both on the full 55,000 training
images. The output starts with the machine (benchmarks/machine.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import machine

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CASES = [("configs/mlp.yaml", ["train.epochs=2"]), ("configs/cnn.yaml", ["train.epochs=1"])]


def measure(config: str, overrides: list[str]) -> dict:
    """summary.json of one quiet run of ``config`` with ``overrides`` (plots off)."""
    with tempfile.TemporaryDirectory() as store:
        command = [sys.executable, "-m", "nnexp", "run", config, f"tracking.store={store}", "tracking.plots=false",
                   *overrides, "-q"]
        subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        [summary] = [json.loads(p.read_text()) for p in Path(store).glob("*/summary.json")]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="one config to measure (default: mlp.yaml and cnn.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for that config")
    args = parser.parse_args()
    cases = [(args.config, args.overrides)] if args.config else DEFAULT_CASES
    machine.print_header("bench_diagnostics.py", ceiling=False, torch=False)
    print(f"{'config':<26}{'overrides':<24}{'epochs':>7}{'epoch s':>10}{'diagnostics s':>15}{'fraction':>10}")
    for config, overrides in cases:
        s = measure(config, overrides)
        epochs = s["epochs_completed"]
        per_epoch, diagnostics = s["train_seconds"] / epochs, s["diagnostics_seconds"] / epochs
        print(f"{config:<26}{' '.join(overrides):<24}{epochs:>7}{per_epoch:>10.2f}{diagnostics:>15.4f}"
              f"{diagnostics / per_epoch:>10.2%}")


if __name__ == "__main__":
    main()
