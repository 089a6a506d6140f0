"""The ``nnexp`` subcommands, one module per group of related commands; the CLI
(``nnexp/cli.py``) loads a module only when one of its commands runs."""
