"""Comparing runs: selection filters, statistics over seeds, tables, plots and reports."""
