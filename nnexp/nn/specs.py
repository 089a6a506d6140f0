"""The option tables' shared vocabulary.

Layers, optimizers and schedules declare their options in tables of the form
``{option: (python type, default)}`` (``LAYER_SPECS``, ``OPTIMIZER_SPECS``,
``SCHEDULE_SPECS``); the config validator reads them, so an option is declared
once, next to the code that uses it.  ``REQUIRED`` as a default means the
option must be given.
"""

from __future__ import annotations

__all__ = ["REQUIRED"]


class _Required:
    """The one instance is ``REQUIRED``; it survives pickling as itself."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self):
        return (_Required, ())


REQUIRED = _Required()
