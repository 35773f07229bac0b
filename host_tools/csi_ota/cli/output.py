"""The CLI's rich consoles: full values when output is piped, captured or logged by CI.

On a terminal, rich fits tables to its width; table cells fold (wrap mid-value) instead of
ending in "…", so a sha256, URL or device id is never cut. When stdout is not a terminal
(a pipe, a file, a CI log) there is no width to fit: the console is as wide as the
longest line (NON_TTY_WIDTH), so every row stays on one line, whole, for grep and awk.
COLUMNS is ignored there - it describes a terminal that is not attached. Scripts should
still prefer --json.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.table import Table

NON_TTY_WIDTH = 10_000


class CliConsole(Console):
    """A rich Console that never truncates: unlimited width off a terminal, folding cells on one."""

    @property
    def size(self) -> ConsoleDimensions:
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(NON_TTY_WIDTH, self._height or 25)
        return super().size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        width, height = new_size
        self._width = width
        self._height = height

    def print(self, *objects: Any, **kwargs: Any) -> None:
        for renderable in objects:
            if isinstance(renderable, Table):
                fold_cells(renderable)
        super().print(*objects, **kwargs)


def fold_cells(table: Table) -> Table:
    """Cells that do not fit wrap onto more lines instead of being cut with an ellipsis."""
    for column in table.columns:
        if column.overflow == "ellipsis":
            column.overflow = "fold"
    return table


def make_console(*, stderr: bool = False) -> CliConsole:
    return CliConsole(stderr=stderr, highlight=False)
