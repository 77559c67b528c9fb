"""docs/protocol.md read as data: its tables (client and server frame types with their
fields, error codes, close codes) and its HTTP statuses, for the conformance, fuzz and model
tests to check the server against the document rather than against a copy of it."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from tests import markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
_TICKED = re.compile(r"`([^`]+)`")
_NAME = re.compile(r"[a-z][a-z_]*")


@functools.cache
def text() -> str:
    return DOC.read_text()


def section(heading: str) -> str:
    """The text under ``heading`` (see :func:`tests.markdown.section`)."""
    try:
        return markdown.section(text(), heading)
    except LookupError:
        raise LookupError(f"docs/protocol.md has no heading {heading!r}") from None


def table(heading: str) -> list[list[str]]:
    """The rows (cells stripped, header and rule left out) of the first table under
    ``heading``."""
    return markdown.first_table(section(heading))


def first_ticked(cell: str) -> str:
    found = _TICKED.search(cell)
    if found is None:
        raise ValueError(f"no `name` in table cell {cell!r}")
    return found.group(1)


def client_types() -> dict[str, set[str]]:
    """Client frame types and the field names their row lists."""
    return {
        first_ticked(row[0]): {name for name in _TICKED.findall(row[1]) if _NAME.fullmatch(name)}
        for row in table("Client → server")
    }


def server_types() -> dict[str, str]:
    """Server frame types and their "fields" cell."""
    return {first_ticked(row[0]): row[1] for row in table("Server → client")}


def welcome_fields() -> set[str]:
    """The top-level fields of the ``welcome`` frame (``type`` and the names in its "fields"
    cell outside parentheses, which describe a field's value)."""
    top_level = re.sub(r"\([^)]*\)", "", server_types()["welcome"])
    return {"type", *_TICKED.findall(top_level)}


def error_codes() -> set[str]:
    return {first_ticked(row[0]) for row in table("Error codes")}


def close_codes() -> set[int]:
    return {int(row[0]) for row in table("Close codes")}


def http_statuses() -> set[int]:
    """Every HTTP status the document names (a three-digit number from 200 to 599 standing
    alone), plus 101 for the WebSocket handshake."""
    found = {int(n) for n in re.findall(r"(?<![\w.~:-])([2-5][0-9][0-9])(?![\w.~-])", text())}
    return found | {101}
