"""Errors about a function's arguments, worded with the parameters' names: the library speaks of
``frames``, a command line re-words the message with its own flags (``--frames``)."""
from __future__ import annotations

from collections.abc import Callable


class OptionError(ValueError):
    """A ``ValueError`` naming arguments as ``{name}`` marks in its ``template``: ``str(error)``
    writes the parameter names, :meth:`spelled` any other spelling (a command's flags)."""

    def __init__(self, template: str, *names: str):
        self.template, self.names = template, names
        super().__init__(self.spelled(lambda name: name))

    def spelled(self, spell: Callable[[str], str]) -> str:
        text = self.template
        for name in self.names:
            text = text.replace("{" + name + "}", spell(name))
        return text


def flag(name: str) -> str:
    """A parameter's command-line flag: ``--`` and the name with dashes (``top_k``: ``--top-k``)."""
    return "--" + name.replace("_", "-")
