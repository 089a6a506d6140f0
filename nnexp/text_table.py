"""Tables as plain text: aligned columns for a terminal, or Markdown.

Callers turn their values into cell texts first (how a value looks is theirs
to say); this module only lays the texts out.
"""

from __future__ import annotations


def aligned(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart, the header first; no trailing spaces."""
    columns = list(zip(*rows)) if rows else [()] * len(header)
    widths = [max(len(h), max(map(len, col), default=0)) for h, col in zip(header, columns)]
    last = len(header) - 1
    return "\n".join("  ".join([v.ljust(w) for v, w in zip(line[:last], widths)] + list(line[last:])).rstrip()
                     for line in [header] + rows)


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown (GitHub) table; '|' inside a cell is escaped."""
    def line(values):
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"
    return "\n".join([line(header), "| " + " | ".join("---" for _ in header) + " |"] + [line(r) for r in rows])
