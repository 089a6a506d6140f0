"""Runs out to the tools teams use: an MLflow tracking store, TensorBoard event files, CSV and Parquet tables.

Each target is a module (``mlflow.py``, ``tensorboard.py``, ``tables.py``) that imports its library
only inside the function that writes, so that ``nnexp export`` without the extra says which
``pip install`` to run instead of failing on import; ``runs.py`` is what they all read of a run.
"""
