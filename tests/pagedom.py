"""Reads the status page's HTML (as served, or as a browser's DOM dump) back into rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Row:
    target: str
    state: str
    cells: dict[str, str] = field(default_factory=dict)
    """Column label -> the cell's text, whitespace collapsed."""


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[Row] = []
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts = 0
        self._cell: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.elements.append((tag, found))
        if tag == "script":
            self.scripts += 1
        if tag == "tr" and "data-target" in found:
            self.rows.append(Row(found["data-target"] or "", found.get("data-state") or ""))
        elif tag == "td" and self.rows and "data-label" in found:
            self._cell, self._text = found["data-label"], []
        elif tag == "br" and self._cell is not None:
            self._text.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].cells[self._cell] = " ".join("".join(self._text).split())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._text.append(data)


@dataclass
class Page:
    rows: dict[str, Row]
    elements: list[tuple[str, dict[str, str | None]]]
    """Every start tag with its attributes, in document order."""
    scripts: int


def read_page(html: str) -> Page:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return Page({row.target: row for row in reader.rows}, reader.elements, reader.scripts)
