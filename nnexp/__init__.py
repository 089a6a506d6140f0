"""nnexp: a from-scratch NumPy neural network with honest, on-disk experiment tracking.

Track your own training loop with ``nnexp.init``, ``nnexp.log`` and
``run.finish`` (W&B's call shapes; see nnexp/tracking/api.py and
docs/your-code.md), and read runs back with ``nnexp.load_runs``.
"""

__version__ = "0.1.0"

__all__ = ["Run", "finish", "init", "load_runs", "log"]

_API = ("init", "log", "finish", "Run", "Config", "Summary")


def __getattr__(name):
    # loaded on first use, so that importing nnexp stays quick: load_runs pulls in pandas,
    # the logging API NumPy and YAML
    if name == "load_runs":
        from .compare.frame import load_runs

        return load_runs
    if name in _API:
        from .tracking import api

        return getattr(api, name)
    if name in ("run", "config", "summary"):  # W&B's wandb.run, wandb.config, wandb.summary: the open run's
        from .tracking import api

        run = api.current()
        if name == "run":
            return run
        if run is None:
            raise AttributeError(f"nnexp.{name}: no run is open; call nnexp.init() first")
        return getattr(run, name)
    raise AttributeError(f"module 'nnexp' has no attribute {name!r}")
