"""Under load: four sweeps write into one store at once while `nnexp runs`
and `nnexp compare` read it in a loop (benchmarks/load_store.py, sized down)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from load_store import hammer  # noqa: E402


def test_four_sweeps_and_two_readers_lose_nothing_and_never_fail_a_read(tmp_path):
    r = hammer(tmp_path, sweeps=4, trials=3, epochs=2, subset=600, readers=2)
    assert r["sweep_errors"] == [] and r["problems"] == []
    assert r["reads"] >= 2 and r["read_errors"] == 0  # each reader read (how often: the machine's load decides)
    assert r["runs_written"] == r["completed"] == r["listed"] == r["indexed"] == 12
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["listing_warnings"] == 0
    assert r["index_integrity"] == "ok"


def test_memory_stays_flat_across_epochs(nnexp, tiny_config, store):
    """Logging, checkpoints and summaries every epoch must not grow the process:
    the resident set after the last of 40 epochs is within 5 MiB of epoch 1's."""
    import json

    code, _, err = nnexp("run", tiny_config, "-q", "train.epochs=40", "data.train_subset=1000")
    assert code == 0, err
    [run] = [p for p in store.iterdir() if p.is_dir()]
    s = json.loads((run / "summary.json").read_text())
    assert s["epochs_completed"] == 40 and s["rss_mib_epoch_1"] > 0
    assert s["rss_mib"] - s["rss_mib_epoch_1"] < 5, (s["rss_mib_epoch_1"], s["rss_mib"])
