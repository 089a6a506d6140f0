"""Progress lines of the commands that train: on stderr, between tqdm's bars."""

from __future__ import annotations

import sys

from tqdm import tqdm


def log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def quiet(*args, **kwargs) -> None:
    pass


def logger(is_quiet: bool):
    return quiet if is_quiet else log
