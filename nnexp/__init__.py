"""nnexp: a from-scratch NumPy neural network with honest, on-disk experiment tracking."""

__version__ = "0.1.0"

__all__ = ["load_runs"]


def __getattr__(name):
    # load_runs pulls in pandas; importing it lazily keeps `nnexp runs` quick
    if name == "load_runs":
        from .compare.frame import load_runs

        return load_runs
    raise AttributeError(f"module 'nnexp' has no attribute {name!r}")
