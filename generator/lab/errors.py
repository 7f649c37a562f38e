"""The one error a lab file can raise: where (file, field path) and what."""

from __future__ import annotations


class LabError(Exception):
    """A lab file that cannot be used; str() is the one line shown to the user."""

    def __init__(self, path: str, message: str, source: str = "") -> None:
        self.path = path
        self.message = message
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        prefix = f"{self.source}: " if self.source else ""
        return f"{prefix}{where}{self.message}"
