"""Tables as plain text: aligned columns for a terminal, or Markdown.

Callers turn their values into cell texts first (how a value looks is theirs
to say); this module only lays the texts out.
"""

from __future__ import annotations


def aligned(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart, the header first; no trailing spaces."""
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(header)]
    lines = [header] + rows
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines)


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown (GitHub) table; '|' inside a cell is escaped."""
    def line(values):
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"
    return "\n".join([line(header), "| " + " | ".join("---" for _ in header) + " |"] + [line(r) for r in rows])
