"""nnexp: a from-scratch NumPy neural network with honest, on-disk experiment tracking."""

__version__ = "0.1.0"

__all__ = ["load_runs"]


def __getattr__(name):
    # load_runs pulls in pandas (heavy): loaded on first use, so that importing nnexp stays quick
    if name == "load_runs":
        from .compare.frame import load_runs

        return load_runs
    raise AttributeError(f"module 'nnexp' has no attribute {name!r}")
