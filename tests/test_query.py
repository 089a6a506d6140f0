"""The --where filter grammar: valid expressions against hand-made records,
invalid ones with their messages, and fuzzing (any input parses or raises
FilterError, never anything else)."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnexp.compare.query import (
    MISSING,
    Filter,
    FilterError,
    check_names,
    compile_filter,
    known_names,
    parse,
    record_lookup,
)
from nnexp.compare.select import RunQuery, select_runs
from nnexp.errors import ConfigError
from nnexp.tracking import RunStore
from nnexp.tracking import index as index_module
from nnexp.tracking.records import make_record


def record(run_id, params=None, metrics=None, **summary):
    summary.setdefault("status", "completed")
    return {"id": run_id, "path": f"runs/{run_id}", "summary": summary,
            "params": params or {}, "metrics": metrics or {}}


RECORDS = [
    record("r1", name="mlp", seed=0, tags=["baseline", "adam"], dataset="mnist",
           params={"optimizer.name": "adam", "optimizer.lr": 0.001, "data.batch_size": 128,
                   "model.layers": "flatten | dense(512) | relu | dense(10)", "train.seed": 0},
           metrics={"val_accuracy": 0.981, "test_accuracy": 0.979, "epochs": 15.0}),
    record("r2", name="mlp", seed=1, tags=[], dataset="mnist", sweep="lr-sweep-1a2b3c4d", trial=3,
           params={"optimizer.name": "sgd", "optimizer.lr": 0.1, "optimizer.momentum": 0.9,
                   "data.batch_size": 64, "train.seed": 1},
           metrics={"val_accuracy": 0.962, "epochs": 5.0}),
    record("r3", name="it's \"quoted\"", seed=2, tags=["cnn"], dataset="fashion-mnist", status="failed",
           params={"optimizer.name": "adamw", "optimizer.lr": 2e-3, "data.batch_size": 128,
                   "data.augment": True, "train.seed": 2},
           metrics={"val_accuracy": 0.895}),
]


def select(text, records=RECORDS):
    flt = parse(text)
    return [r["id"] for r in records if flt.matches(record_lookup(r))]


def values(**fields):
    """A lookup over plain keyword values; absent names are MISSING."""
    return lambda name: fields.get(name, MISSING)


# ------------------------------------------------------------------ valid expressions


@pytest.mark.parametrize("text, expected", [
    # the example
    ("optimizer.name == 'adam' and val_accuracy > 0.97", ["r1"]),
    ('optimizer.name == "adam" or optimizer.name == "adamw"', ["r1", "r3"]),
    ("optimizer.name != 'adam'", ["r2", "r3"]),
    ("optimizer.lr < 1e-2", ["r1", "r3"]),
    ("optimizer.lr >= 2e-3", ["r2", "r3"]),
    ("optimizer.lr <= 0.001", ["r1"]),
    ("data.batch_size == 128.0", ["r1", "r3"]),        # ints and floats compare numerically
    ("param.optimizer.name == 'sgd'", ["r2"]),
    ("metric.val_accuracy > 0.9", ["r1", "r2"]),
    ("val_accuracy > -1", ["r1", "r2", "r3"]),          # negative literal
    ("val_accuracy > .9 and val_accuracy < .97", ["r2"]),
    ("optimizer.name in ['adam', 'sgd']", ["r1", "r2"]),
    ("optimizer.name not in ['adam', 'sgd']", ["r3"]),
    ("data.batch_size in [64, 32,]", ["r2"]),           # trailing comma
    ("'adam' in tags", ["r1"]),
    ("'adam' not in tags", ["r2", "r3"]),
    ("'fashion' in dataset", ["r3"]),                   # substring when both are strings
    ("not tags", ["r2"]),                               # empty list is false
    ("tags", ["r1", "r3"]),
    ("sweep", ["r2"]),
    ("sweep == null", ["r1", "r3"]),
    ("sweep != None", ["r2"]),
    ("trial == 3 and sweep == 'lr-sweep-1a2b3c4d'", ["r2"]),
    ("status == 'failed'", ["r3"]),
    ("id == 'r2' || id == 'r3'", ["r2", "r3"]),
    ("seed >= 1 && !(status == 'failed')", ["r2"]),
    ("name == 'it\\'s \"quoted\"'", ["r3"]),             # escaped quote inside single quotes
    ('name == "it\'s \\"quoted\\""', ["r3"]),            # escaped quotes inside double quotes
    ("data.augment == true", ["r3"]),
    ("data.augment == True and data.augment", ["r3"]),
    ("data.augment == 1", []),                          # booleans are not numbers
    ("model.layers == 'flatten | dense(512) | relu | dense(10)'", ["r1"]),
    ("epochs >= 5", ["r1", "r2"]),                      # metric 'epochs' is missing in r3
])
def test_selection(text, expected):
    assert select(text) == expected


def test_or_binds_looser_than_and():
    # a or (b and c) is true; (a or b) and c would be false
    assert parse("a or b and c").matches(values(a=True, b=False, c=False)) is True
    assert parse("(a or b) and c").matches(values(a=True, b=False, c=False)) is False
    # (a and b) or c
    assert parse("a and b or c").matches(values(a=False, b=True, c=True)) is True


def test_not_binds_tighter_than_and():
    # (not a) and b is false; not (a and b) would be true
    assert parse("not a and b").matches(values(a=False, b=False)) is False
    assert parse("not (a and b)").matches(values(a=False, b=False)) is True
    assert parse("not not a").matches(values(a=True)) is True
    assert parse("not a in [1]").matches(values(a=1)) is False  # not (a in [1])


def test_missing_values_are_never_ordered():
    # missing (absent, None, NaN): no <, <=, >, >= holds, and == only with null
    for missing in ({}, {"x": None}, {"x": math.nan}, {"x": np.nan}, {"x": pd.NA}):
        lookup = values(**missing)
        for op in ("<", "<=", ">", ">="):
            assert parse(f"x {op} 0").matches(lookup) is False
            assert parse(f"not (x {op} 0)").matches(lookup) is True
        assert parse("x == null").matches(lookup) is True
        assert parse("x != null").matches(lookup) is False
        assert parse("x != 0").matches(lookup) is True
        assert parse("x in [1, 2]").matches(lookup) is False
    assert parse("x == null").matches(values(x=0)) is False


def test_numbers_and_strings_are_not_ordered_against_each_other():
    assert parse("x < 'a'").matches(values(x=1)) is False
    assert parse("x > 'a'").matches(values(x=1)) is False
    assert parse("x == '1'").matches(values(x=1)) is False
    assert parse("x >= 1").matches(values(x="2")) is False
    assert parse("x < 'b'").matches(values(x="a")) is True  # strings with strings
    assert parse("x < 'B'").matches(values(x="a")) is False  # case-sensitive
    assert parse("x == 'Adam'").matches(values(x="adam")) is False


def test_number_literals():
    assert parse("x == 1e-3").matches(values(x=0.001))
    assert parse("x == -2.5E+2").matches(values(x=-250))
    assert parse("x == 3.").matches(values(x=3))
    assert parse("x == -.5").matches(values(x=-0.5))
    assert parse("x > 12345678901234567890").matches(values(x=1.3e19))


def test_numpy_values_from_a_frame():
    # values read from pandas arrive as numpy scalars and arrays
    assert parse("x == 2 and y == true and z == 0.5").matches(
        values(x=np.int64(2), y=np.bool_(True), z=np.float64(0.5)))
    assert parse("'a' in tags").matches(values(tags=np.array(["a", "b"])))
    assert parse("x == [1, 2]").matches(values(x=(1, 2.0)))


def test_bools_are_not_numbers():
    assert parse("x == 1").matches(values(x=True)) is False
    assert parse("x > 0").matches(values(x=True)) is False
    assert parse("x == true").matches(values(x=True)) is True
    assert parse("x in [1, 0]").matches(values(x=False)) is False


def test_names_collects_every_identifier():
    flt = parse("(a.b == 1 or not c) and 'x' in tags and model.layers.1.units > 3")
    assert flt.names == {"a.b", "c", "tags", "model.layers.1.units"}
    assert parse("1 == 1").names == set()


def test_a_literal_alone_is_tested_for_truth():
    assert parse("true").matches(values()) is True
    assert parse("0").matches(values()) is False
    assert parse("''").matches(values()) is False


# ------------------------------------------------------------------ record lookups


def test_record_lookup_resolution_order():
    r = record("r9", name="n", seed=4, tags=["t"], sweep="s", trial=2,
               params={"lr": 0.5, "optimizer.lr": 0.1, "shared": "param"},
               metrics={"shared": 0.25, "val_accuracy": 0.9})
    get = record_lookup(r)
    assert get("param.shared") == "param"
    assert get("metric.shared") == 0.25
    assert get("shared") == 0.25  # metrics before params
    assert get("optimizer.lr") == 0.1
    assert (get("id"), get("name"), get("seed"), get("tags"), get("sweep"), get("trial")) == \
        ("r9", "n", 4, ["t"], "s", 2)
    assert get("path") == "runs/r9"
    assert get("nope") is MISSING
    assert get("param.val_accuracy") is MISSING
    assert get("metric.lr") is MISSING


def test_record_lookup_dataset_falls_back_to_the_config():
    r = record("r9", params={"data.dataset": "fashion-mnist"})
    assert record_lookup(r)("dataset") == "fashion-mnist"


def test_record_lookup_status_is_the_live_status():
    # 'running' on this host with a process id that does not exist: shown as 'dead'
    r = record("r9", status="running", host=socket.gethostname(), pid=2**22 + 12345)
    assert record_lookup(r)("status") == "dead"
    assert parse("status == 'dead'").matches(record_lookup(r))


def test_known_names():
    names = known_names(RECORDS)
    for name in ("optimizer.name", "param.optimizer.name", "val_accuracy", "metric.val_accuracy",
                 "optimizer.momentum", "data.augment", "id", "status", "tags", "sweep", "dataset"):
        assert name in names
    assert "metric.optimizer.name" not in names and "param.val_accuracy" not in names
    assert known_names([]) >= {"id", "name", "status", "seed"}


# ------------------------------------------------------------------ invalid expressions


def error(text, known=None) -> str:
    with pytest.raises(FilterError) as info:
        compile_filter(text, known)
    return str(info.value)


def test_the_message_names_the_problem_and_shows_a_caret():
    text = "optimizer.name == 'adam' and val_accuracy >"
    message = error(text)
    first, shown, caret = message.split("\n")
    assert first == "--where: expected a value after '>' at column 44"
    assert shown == "  " + text
    assert caret == "  " + " " * 43 + "^"


@pytest.mark.parametrize("text, fragment, column", [
    ("name == 'mlp", "unterminated string", 9),
    ('name == "mlp', "no closing \"", 9),
    ("a >", "expected a value after '>'", 4),
    ("a == 1 and", "expected a condition after 'and'", 11),
    ("a == 1 or or b", "expected a condition after 'or', got 'or'", 11),
    ("not", "expected a condition after 'not'", 4),
    ("== 3", "expected a condition, got '=='", 1),
    ("(a == 1", "'(' is never closed", 1),
    ("((a == 1) or b", "'(' is never closed", 1),
    ("a == 1)", "unmatched ')'", 7),
    (")", "unmatched ')'", 1),
    ("()", "empty parentheses", 2),
    ("(a b)", "expected ')' to close the '(' at column 1, got 'b'", 4),
    ("a < b < c", "comparisons cannot be chained", 7),
    ("0 < x <= 1", "comparisons cannot be chained", 7),
    ("a in [1] not in [2]", "comparisons cannot be chained", 10),
    ("(a) == 1", "a comparison needs a field or a value on its left", 5),
    ("a = 1", "use '=='", 3),
    ("a & b", "use '&&' or 'and'", 3),
    ("a == 1 AND b", "keywords are lowercase", 8),
    ("a b", "expected 'and', 'or' or the end of the expression, got 'b'", 3),
    ("x > -", "'-' only starts a negative number", 5),
    ("x == 1abc", "invalid number '1abc'", 6),
    ("x == 1.2.3", "invalid number", 6),
    ("a. == 1", "a name cannot end with '.'", 2),
    ("a..b", "a name cannot end with '.'", 2),
    ("x in [1, 2", "'[' is never closed", 6),
    ("x in [1 2]", "expected ',' or ']'", 9),
    ("x in [y]", "expected a literal value in the list", 7),
    ("x in [[1]]", "expected a literal value in the list", 7),
    ("x in [,]", "expected a value or ']'", 7),
    ("x == $", "unexpected character '$'", 6),
    ("x == 1 # comment", "unexpected character '#'", 8),
])
def test_invalid_expressions(text, fragment, column):
    message = error(text)
    assert fragment in message
    assert f"at column {column}" in message


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_expression(text):
    assert error(text) == "--where: the expression is empty"


@pytest.mark.parametrize("text", [
    "__import__('os')",
    "__import__('os').system('touch /tmp/nnexp-pwned')",
    "os.system('ls')",
    "open('x').read()",
    "[].__class__",
    "x.__class__.__bases__ == 1 or exec('1')",
    "lambda: 1",
    "1 + 1 == 2",
])
def test_python_is_not_evaluated(text):
    with pytest.raises(FilterError):
        parse(text)


def test_function_calls_get_their_own_message():
    assert "function calls are not supported at column 11" in error("__import__('os')")


def test_deep_nesting_is_an_error_not_a_recursion_error():
    assert "nested more than" in error("(" * 500 + "a" + ")" * 500)
    assert "nested more than" in error("not " * 500 + "a")
    assert parse("(" * 30 + "a" + ")" * 30).matches(values(a=1))


def test_unknown_field_with_suggestion():
    known = known_names(RECORDS)
    assert error("optimizr.name == 'adam'", known) == \
        "unknown field 'optimizr.name' in --where (did you mean 'optimizer.name'?)"
    assert error("val_acuracy > 0.9", known) == \
        "unknown field 'val_acuracy' in --where (did you mean 'val_accuracy'?)"
    assert error("zzzzzzzz > 1", known) == "unknown field 'zzzzzzzz' in --where"
    flt = parse("optimizer.name == 'adam' and metric.val_accuracy > 0.9")
    check_names(flt, known)  # all known: no error
    assert isinstance(compile_filter("status == 'completed'", known), Filter)


def test_filter_errors_exit_with_code_2():
    with pytest.raises(ConfigError) as info:
        parse("a <")
    assert isinstance(info.value, FilterError)
    assert info.value.exit_code == 2


def test_a_non_string_is_rejected():
    with pytest.raises(FilterError, match="expected a string"):
        parse(None)


# ------------------------------------------------------------------ fuzzing

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FRAGMENTS = ["a", "b.c", "optimizer.lr", "tags", "not", "and", "or", "in", "==", "!=", "<", "<=", ">",
             ">=", "=", "(", ")", "[", "]", ",", "'s'", '"t"', "'", '"', "\\", "1", "-2.5", "1e-3",
             "1e", ".", "-", "true", "null", "None", "&&", "||", "!", "&", "|", "AND", "__import__",
             "\n", "\t", "é", "0x10", "nan", "inf", " "]

ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                      st.text(max_size=5), st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=3))


def _parse_or_error(text):
    try:
        return parse(text)
    except FilterError as exc:
        assert str(exc).startswith("--where: ")
        return None


@FUZZ
@given(st.text())
def test_any_text_parses_or_raises_filter_error(text):
    flt = _parse_or_error(text)
    assert flt is None or isinstance(flt, Filter)


@FUZZ
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12), st.booleans(), ANY_VALUE, ANY_VALUE)
def test_token_soups_parse_or_raise_and_never_crash_on_evaluation(parts, spaced, x, y):
    flt = _parse_or_error((" " if spaced else "").join(parts))
    if flt is not None:
        lookup = values(**{"a": x, "b.c": y, "optimizer.lr": x, "tags": y})
        assert flt.matches(lookup) in (True, False)
        for r in RECORDS:
            assert flt.matches(record_lookup(r)) in (True, False)


# --------------------------------------------------------------------------- in the store's index

ODD_VALUES = [0.5, 1, 1.0, 2.5, -3, True, False, None, "a", "b", "1", [1, 2], {"k": 1}, float("inf"), float("-inf"),
              "Infinity", 0.1 + 0.2, 1e-300]


@pytest.fixture(scope="module")
def odd_store(tmp_path_factory):
    """Runs whose param ``p.x`` and summary field ``sweep`` take every kind of value,
    and one with a NaN in its summary (which SQLite's JSON functions refuse)."""
    import yaml

    store = tmp_path_factory.mktemp("odd") / "runs"
    for i, value in enumerate(ODD_VALUES):
        path = store / f"run-{i:02d}"
        path.mkdir(parents=True)
        (path / "config.yaml").write_text(yaml.safe_dump({"p": {"x": value, "i": i}}))
        (path / "metrics.csv").write_text(f"epoch,val_accuracy\n1,{0.1 * (i % 10)}\n")
        summary = {"status": "completed", "start_time": float(i), "sweep": value if isinstance(value, str) else None}
        if i == 3:
            summary["test_loss"] = float("nan")
        (path / "summary.json").write_text(json.dumps(summary))
    return store


@pytest.mark.parametrize("where", [
    "p.x > 0.5", "p.x >= 1", "p.x == 1", "1 == p.x", "p.x < 0", "p.x <= -3", "0.3 < p.x", "p.x == 0.30000000000000004",
    "p.x == 'a'", "p.x > 'a'", "p.x < 'b'", "p.x == '1'", "p.x == true", "p.x > 1e300", "p.x < -1e300",
    "p.x == 1e-300", "p.x > 0 and val_accuracy >= 0.3", "(p.x > 0 and p.i < 10) and not p.x == 1",
    "p.x > 0 or p.x == 'a'", "sweep == 'a' and p.i >= 0", "sweep > 'A'", "status == 'completed' and p.x == 2.5",
    "param.p.x == 'b'", "p.x != 1 and p.i > 3", "'1' in p.x", "p.x", "sweep != null", "not sweep == 'a'",
])
def test_the_index_chooses_what_the_filter_chooses(odd_store, where):
    """Whatever the index decides before parsing (searching the stored JSON, SQLite's JSON
    operators, or neither when a row holds a NaN), the runs are those the filter itself picks."""
    from nnexp.compare.select import RunQuery, select_runs
    from nnexp.tracking import RunStore

    chosen = [r["id"] for r in select_runs(odd_store, RunQuery(where=where)).records]
    flt = parse(where)
    assert chosen == [r["id"] for r in RunStore(odd_store).records() if flt.matches(record_lookup(r))]


def test_a_name_no_run_has_is_still_a_typo_when_the_index_decides_first(odd_store):
    from nnexp.compare.select import RunQuery, select_runs

    with pytest.raises(FilterError, match="unknown field 'x' in --where"):
        select_runs(odd_store, RunQuery(where="x > 0.5"))
    with pytest.raises(FilterError, match="unknown field 'nope'"):
        select_runs(odd_store, RunQuery(where="p.x == 'a' and nope > 1"))


@pytest.fixture(scope="module")
def aged_odd_store(odd_store, tmp_path_factory):
    """The odd store's runs written an hour ago and indexed once: the index trusts
    every row (none is in its racy window), so --where is decided by searching the
    stored JSON before anything is read or parsed."""
    store = tmp_path_factory.mktemp("aged") / "runs"
    shutil.copytree(odd_store, store, ignore=shutil.ignore_patterns(".index.sqlite*"))
    old = time.time() - 3600
    for folder in store.iterdir():
        for path in [*folder.iterdir(), folder]:
            os.utime(path, (old, old))
    RunStore(store).records()
    return store


AGED_WHERES = [
    "p.i == 3", "p.i >= 15", "p.i > 15", "p.i <= 2", "p.i < 2", "15 <= p.i", "2 > p.i", "p.x == 1", "p.x >= 1",
    "p.x <= -3", "p.x > 2.5", "p.x == 'b'", "p.x == 'Infinity'", "p.x > 1e300", "p.x == 0.30000000000000004",
    "p.x == 1e-300", "sweep == 'a'", "val_accuracy >= 0.5 and p.i < 12", "p.i > 3 and p.x == 'a'",
    "p.x < 0 and p.i >= 0", "p.i == 99", "status == 'completed' and p.i >= 10",
]


@pytest.mark.parametrize("where", AGED_WHERES)
def test_a_trusted_index_chooses_what_the_filter_chooses(aged_odd_store, where, monkeypatch, nnexp):
    """`--where` on rows the index trusts: the runs are those the filter picks from
    records read from the folders themselves, nothing is read again, and the
    search in the stored JSON looked at every row."""
    folders = sorted(p for p in aged_odd_store.iterdir() if not p.name.startswith("."))
    flt = parse(where)
    expected = [r["id"] for r in map(make_record, folders) if flt.matches(record_lookup(r))]
    searched, reads = [], []
    may_pass, read = index_module._may_pass, index_module.make_record
    monkeypatch.setattr(index_module, "_may_pass", lambda patterns, texts: searched.append(may_pass(patterns, texts))
                        or searched[-1])
    monkeypatch.setattr(index_module, "make_record", lambda run_dir: reads.append(run_dir) or read(run_dir))
    assert [r["id"] for r in select_runs(aged_odd_store, RunQuery(where=where)).records] == expected
    assert reads == [] and len(searched) == len(folders) and flt.necessary()
    assert sum(searched) >= len(expected)
    code, out, err = nnexp("runs", "--store", aged_odd_store, "--where", where, "--json")
    assert code == 0, err
    assert [r["id"] for r in json.loads(out)] == expected


@pytest.mark.parametrize("where, parsed", [("p.i == 3", 1), ("p.i >= 15", 3), ("p.x == 'b'", 1), ("p.i == 99", 0)])
def test_a_trusted_index_parses_only_the_runs_that_can_match(aged_odd_store, where, parsed, monkeypatch):
    """The search in the stored JSON lets through only rows whose text holds a value
    meeting the condition: a selective filter parses that many runs of all of them."""
    searched = []
    may_pass = index_module._may_pass
    monkeypatch.setattr(index_module, "_may_pass", lambda patterns, texts: searched.append(may_pass(patterns, texts))
                        or searched[-1])
    chosen = select_runs(aged_odd_store, RunQuery(where=where)).records
    assert len(chosen) == parsed and sum(searched) == parsed and len(searched) == len(ODD_VALUES)


def test_python_spellings_of_the_literal_words_mean_the_same():
    for true, false, null in (("true", "false", "null"), ("True", "False", "None")):
        assert parse(f"flag == {false}").matches(values(flag=False)) is True
        assert parse(f"flag == {false}").matches(values(flag=True)) is False
        assert parse(f"flag == {true}").matches(values(flag=True)) is True
        assert parse(f"x == {null}").matches(values()) is True


def test_the_conditions_an_index_may_test_before_parsing_a_record():
    flt = parse('sweep == "abc" and metric.loss < 0.5 and 0.9 < val_accuracy and (lr > 1 or lr < 0)')
    assert flt.necessary() == [([("summary", "sweep")], "==", "abc"), ([("metrics", "loss")], "<", 0.5),
                               ([("metrics", "val_accuracy"), ("params", "val_accuracy")], ">", 0.9)]
    # the folder's name and path are not stored as fields: nothing to test before parsing
    assert parse('id == "x" and path == "y"').necessary() == []
    # a dataset is in the summary or, for older runs, only in the params
    assert parse('dataset == "mnist" and acc > 0.5').necessary() == [
        ([("summary", "dataset"), ("params", "data.dataset")], "==", "mnist"),
        ([("metrics", "acc"), ("params", "acc")], ">", 0.5)]
