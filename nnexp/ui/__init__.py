"""``nnexp ui``: a read-only web dashboard over a run store (runs, a run, comparisons, sweeps) and its JSON API."""
