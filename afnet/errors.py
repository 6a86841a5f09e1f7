"""Errors about a function's arguments, worded with the parameters' names: the library speaks of
``frames``, a command line re-words the message with its own flags (``--frames``). Also the
command line's spelling helpers: "did you mean" for a mistyped name, and deprecated option aliases."""
from __future__ import annotations

import argparse
import sys
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


def did_you_mean(name: str, choices) -> str:
    """``" (did you mean 'af_resnet50'?)"`` for the choice closest to a mistyped ``name``, or ``""``
    when none is close (difflib's ratio >= 0.6). The one helper behind every name lookup's error:
    models, presets, datasets, subcommands and any other argparse choice."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class DeprecatedAlias(argparse.Action):
    """An option's old spelling: ``add_argument("--classes", dest="num_classes", type=int,
    action=DeprecatedAlias, new="--num-classes")`` stores into the new option's ``dest`` and says on
    stderr which spelling to use instead."""

    def __init__(self, option_strings, dest, *, new: str, **kwargs):
        self.new = new
        kwargs.setdefault("help", f"deprecated spelling of {new}")
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)
