"""``python -m nnexp``: the nnexp command."""

from .command import main

main()
