"""The ``nnexp`` command's entry point: this process's settings, then the CLI.

The CLI module and the light commands import no NumPy, so the settings made
here come before OpenBLAS reads them (a command that trains loads NumPy only
once it runs).
"""

from __future__ import annotations

from . import environment
from .cli import main as run_cli


def main(argv=None) -> None:
    environment.apply()
    run_cli(argv)
