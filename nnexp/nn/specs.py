"""The option tables' shared vocabulary.

Layers, optimizers and schedules declare their options in tables of the form
``{option: (python type, default)}`` (``LAYER_SPECS``, ``OPTIMIZER_SPECS``,
``SCHEDULE_SPECS``); the config validator reads them, so an option is declared
once, next to the code that uses it.  ``REQUIRED`` as a default means the
option must be given.  A layer's or optimizer's defaults are its constructor's
(``options_of`` reads them from the signature), so they are written once.
"""

from __future__ import annotations

import inspect

__all__ = ["REQUIRED", "options_of"]


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


def options_of(cls: type, types: dict[str, type], names: dict[str, str] | None = None) -> dict[str, tuple]:
    """{option: (type, default)} with each type from ``types`` and each default
    from ``cls.__init__``'s signature (REQUIRED where it has none); ``names``
    maps an option to a constructor parameter of another name."""
    parameters = inspect.signature(cls.__init__).parameters
    table = {}
    for option, typ in types.items():
        p = parameters[(names or {}).get(option, option)]
        table[option] = (typ, REQUIRED if p.default is p.empty else p.default)
    return table
