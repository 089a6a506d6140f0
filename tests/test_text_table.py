"""Plain-text tables: the run listing and the comparison print through one layout."""

from __future__ import annotations

from nnexp.commands.listing import RUN_COLUMNS, format_table
from nnexp.text_table import aligned, markdown


def test_aligned_columns_two_spaces_apart_without_trailing_spaces():
    text = aligned(["id", "value", "note"], [["a", "1", ""], ["long-id", "22", "x"]])
    assert text.splitlines() == [
        "id       value  note",
        "a        1",
        "long-id  22     x",
    ]


def test_aligned_header_only_and_wide_header():
    assert aligned(["a", "bb"], []) == "a  bb"
    assert aligned(["column"], [["x"]]) == "column\nx"


def test_markdown_escapes_bars():
    assert markdown(["a", "b"], [["1", "x|y"]]) == "| a | b |\n| --- | --- |\n| 1 | x\\|y |"


def test_the_run_listing_formats_its_cells_then_lays_them_out():
    rows = [{"id": "r1", "name": "mlp", "status": "completed", "epochs": "3/3", "val_acc": 0.98125,
             "test_acc": None, "params": 25450, "train_s": 12.345, "started": "2026-01-01T10:00:00+0000"}]
    lines = format_table(rows, RUN_COLUMNS).splitlines()
    assert lines[0].split() == list(RUN_COLUMNS)
    assert lines[1].split() == ["r1", "mlp", "completed", "3/3", "98.12%", "-", "25,450", "12.3",
                                "2026-01-01T10:00:00+0000"]
