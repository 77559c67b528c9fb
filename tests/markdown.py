"""Markdown documents read as data: the text under a heading and the rows of its first
table, for tests that check the code against what the docs say (docs/protocol.md,
README.md's configuration table)."""

from __future__ import annotations

import re
import textwrap


def section(text: str, heading: str) -> str:
    """The text under the heading that starts with ``heading`` (any level), up to the next
    heading of the same or a higher level. Raises ``LookupError`` when there is none."""
    lines = text.splitlines()
    for n, line in enumerate(lines):
        level = len(line) - len(line.lstrip("#"))
        if level and line[level:].strip().startswith(heading):
            end = next(
                (
                    m
                    for m in range(n + 1, len(lines))
                    if lines[m].startswith("#")
                    and len(lines[m]) - len(lines[m].lstrip("#")) <= level
                ),
                len(lines),
            )
            return "\n".join(lines[n + 1 : end])
    raise LookupError(f"no heading {heading!r}")


def first_table(text: str) -> list[list[str]]:
    """The rows (cells stripped, header and rule left out) of the first table in ``text``."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows.append(cells)
    return rows[2:]


def marked_block(text: str, marker: str) -> str:
    """The code block right after the comment ``<!-- marker -->`` in ``text``, dedented.
    Raises ``LookupError`` when there is none."""
    pattern = rf"<!-- {re.escape(marker)} -->\s*^([ \t]*)```[^\n]*\n(.*?)^\1```"
    match = re.search(pattern, text, re.M | re.S)
    if match is None:
        raise LookupError(f"no code block marked <!-- {marker} -->")
    return textwrap.dedent(match.group(2))
