"""Errors the user can fix. The CLI prints them as one line and exits 2."""

from __future__ import annotations


class AgentsftError(Exception):
    """A problem with the user's input or setup, not a bug in agentsft."""


class DataError(AgentsftError):
    """A record that cannot be used, with where it came from and how to fix it.

    ``where`` is ``file:line`` (or another locator); ``field`` the offending
    key, e.g. ``messages[2].role``.
    """

    def __init__(self, problem: str, *, where: str | None = None, field: str | None = None,
                 fix: str | None = None):
        self.problem, self.where, self.field, self.fix = problem, where, field, fix
        super().__init__(self._line())

    def _line(self) -> str:
        parts = [p for p in (self.where, self.field) if p]
        head = ": ".join(parts + [self.problem])
        return f"{head}. Fix: {self.fix}" if self.fix else head

    def at(self, where: str) -> "DataError":
        """The same error, located at ``where`` (kept if already located)."""
        if self.where is None:
            self.where = where
            self.args = (self._line(),)
        return self
