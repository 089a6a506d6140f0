"""Charts described once (``spec.py``; built from the data in ``comparison.py`` and ``run.py``) and drawn
by two renderers: ``matplotlib.py`` (PNG files) and ``plotly.py`` (plotly.js figures)."""
