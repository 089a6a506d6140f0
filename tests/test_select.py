"""The store query (nnexp/compare/select.py): one answer whether the runs come from
the store's index (the commands) or from the records the dashboard holds in memory."""

from __future__ import annotations

import json
import os
import time

import pytest
from click.testing import CliRunner

from nnexp.cli import cli
from nnexp.compare.query import FilterError
from nnexp.compare.select import RunQuery, select_runs
from nnexp.errors import ConfigError, NnexpError
from nnexp.tracking import RunNotFound, RunStore
from nnexp.tracking.index import HeldRecords
from tests import ui_store

QUERIES = [
    RunQuery(),
    RunQuery(sweeps=(ui_store.SWEEP_ID,)),
    RunQuery(sweeps=("lr-seeds",), where="optimizer.lr == 0.01"),
    RunQuery(where="metric.val_accuracy > 0.9 and seed == 0"),
    RunQuery(tags=("ok",)),
    RunQuery(tags=("ok", ui_store.HOSTILE)),
    RunQuery(tags=("ok", "baseline")),
    RunQuery(statuses=("dead",)),
    RunQuery(statuses=("running", "failed")),
    RunQuery(text="T00"),
    RunQuery(text="plain", where="seed == 0"),
    RunQuery(runs=("plain", "killed")),
    RunQuery(sort="val_acc", descending=True),
    RunQuery(sort="test_acc"),
    RunQuery(sort="optimizer.lr", descending=True, offset=2, limit=3),
    RunQuery(sweeps=(ui_store.SWEEP_ID,), sort="seed", offset=4, limit=10),
    RunQuery(descending=True, limit=2),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    made = ui_store.build(root)
    old = time.time() - 10  # out of the index's racy window, so that its rows are trusted
    for name in os.listdir(root):
        for dirpath, _, files in os.walk(root / name):
            for path in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
                os.utime(path, (old, old), follow_symlinks=False)
    RunStore(root).records()  # the index written, its rows trusted from now on
    return root, made


def held(root) -> list[dict]:
    records = HeldRecords(root, warn=lambda message: None)
    records.load()
    return records.records


@pytest.mark.parametrize("query", QUERIES, ids=repr)
def test_the_index_and_records_in_memory_give_the_same_answer(store, query):
    root, _ = store
    from_index = select_runs(root, query)
    in_memory = select_runs(root, query, records=held(root))
    assert [r["id"] for r in from_index.records] == [r["id"] for r in in_memory.records]
    assert from_index.total == in_memory.total
    assert (from_index.sweep or {}).get("id") == (in_memory.sweep or {}).get("id")


def test_each_condition_chooses_what_it_says(store):
    root, made = store

    def ids(**query) -> list[str]:
        return [r["id"] for r in select_runs(root, RunQuery(**query)).records]

    everything = ids()
    assert ids(sweeps=(ui_store.SWEEP_ID,)) == made["sweep"]
    assert ids(tags=("ok",)) == [made["hostile"]]
    assert ids(tags=("ok", "baseline")) == []
    assert ids(statuses=("dead",)) == [made["dead"]]
    assert ids(statuses=("running", "failed")) == [made["hostile"], made["running"]]
    assert ids(text="KILL") == [made["dead"]]  # the name, whatever its case
    assert ids(runs=("killed", "plain")) == [made["plain"], made["dead"]]  # in the store's order
    assert ids(descending=True) == everything[::-1]
    assert ids(sweeps=(ui_store.SWEEP_ID,), where="optimizer.lr == 0.01") == made["sweep"][3:]


def test_sort_and_page(store):
    root, made = store
    chosen = select_runs(root, RunQuery(sort="test_acc", descending=True))
    values = [r["summary"].get("test_accuracy") for r in chosen.records]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True) and values[len(present):] == [None] * (len(values) - len(present))
    assert values[len(present):], "runs without the value (still running, killed) sort last"
    page = select_runs(root, RunQuery(sort="test_acc", descending=True, offset=3, limit=4))
    assert [r["id"] for r in page.records] == [r["id"] for r in chosen.records[3:7]]
    assert page.total == chosen.total == len(chosen.records)


def test_what_names_nothing_is_refused(store):
    root, _ = store
    with pytest.raises(RunNotFound):
        select_runs(root, RunQuery(runs=("no-such-run",)))
    with pytest.raises(NnexpError, match="sweep"):
        select_runs(root, RunQuery(sweeps=("no-such-sweep",)))
    with pytest.raises(FilterError, match="did you mean 'seed'"):
        select_runs(root, RunQuery(where="sed == 0"), records=held(root))
    with pytest.raises(ConfigError, match="limit"):
        RunQuery(limit=0)
    with pytest.raises(ConfigError, match="tags"):
        RunQuery(tags="ok")


def test_runs_command_lists_by_tag_and_status(store):
    root, made = store
    result = CliRunner().invoke(cli, ["runs", "--store", str(root), "--json", "--tag", "ok"])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.output)] == [made["hostile"]]
    result = CliRunner().invoke(cli, ["runs", "--store", str(root), "--status", "dead", "--status", "failed"])
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.splitlines()[1:]]
    assert listed == [made["hostile"], made["dead"]]


def test_held_records_see_a_changed_folder(store, tmp_path):
    root = tmp_path / "store"
    made = ui_store.build(root)
    records = HeldRecords(root, warn=lambda message: None)
    records.load()
    version = records.version
    assert records.refresh() is False and records.version == version
    RunStore(root).annotate(made["plain"], add=("picked",))
    assert records.refresh() is True and records.version == version + 1
    assert "picked" in records.by_id[made["plain"]]["summary"]["tags"]
