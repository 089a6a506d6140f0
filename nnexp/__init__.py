"""nnexp: a from-scratch NumPy neural network with honest, on-disk experiment tracking."""

__version__ = "0.1.0"
