"""``dotted.key=value`` overrides: the one parser of the project (``afnet train key=value``,
the engine's configs, the demo's rows, ``afnet check-data --set``). Values are YAML (so JSON
too): ``optim.lr=2e-2`` is a number, ``model.region_grid=[4, 2, 2]`` a list, ``null`` None."""
from __future__ import annotations

import yaml


class OverrideError(ValueError):
    """An override that is not ``KEY=VALUE`` with a YAML value; the message names it."""


def parse_override(item: str) -> tuple[str, object]:
    """``"optim.lr=0.02"`` -> ``("optim.lr", 0.02)``: the dotted key and its YAML-parsed value
    (numbers like ``2e-2`` too, which YAML 1.1 reads as strings)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise OverrideError(f"override {item!r}: expected KEY=VALUE with a dotted key, e.g. optim.lr=0.02")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise OverrideError(f"override {item!r}: value is not valid YAML ({exc})") from None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    return key.strip(), value
