"""Tables as plain text: aligned columns for a terminal, or Markdown.

Callers turn their values into cell texts first (how a value looks is theirs
to say); this module only lays the texts out.
"""

from __future__ import annotations


def aligned(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart, the header first; no trailing spaces."""
    columns = list(zip(*rows)) if rows else [()] * len(header)
    widths = [max(len(h), max(map(len, col), default=0)) for h, col in zip(header, columns)]
    line = "  ".join([f"{{:<{w}}}" for w in widths[:-1]] + ["{}"]).format  # one C call per line
    return "\n".join([line(*header).rstrip()] + [line(*row).rstrip() for row in rows])


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown (GitHub) table; '|' inside a cell is escaped."""
    def line(values):
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"
    return "\n".join([line(header), "| " + " | ".join("---" for _ in header) + " |"] + [line(r) for r in rows])
