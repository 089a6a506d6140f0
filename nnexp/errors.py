"""The one exception type that nnexp shows to users as a clean message."""


class NnexpError(Exception):
    """A problem the user can fix (bad config, missing data, unknown run).

    The CLI prints ``error: <message>`` and exits with ``exit_code`` instead of
    showing a traceback.
    """

    exit_code = 1


class ConfigError(NnexpError):
    """Invalid configuration or command-line override (exit code 2)."""

    exit_code = 2


class DataError(NnexpError):
    """A dataset could not be found, fetched or parsed."""

    exit_code = 1
