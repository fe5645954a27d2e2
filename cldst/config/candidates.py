"""Candidate lists for adaptive DST: ``sparse_init``, ``growth`` and ``density`` may each name
several values (a list, ``a,b`` on the command line, or ``adaptive`` for the default set), among
which every task chooses on its validation images (cldst/method/adaptive.py). A list of one is
that value: the fixed run, with its run id.
"""

from __future__ import annotations

from typing import Any

ADAPTIVE = "adaptive"
CHOOSABLE = ("sparse_init", "growth", "density")


def candidates(value: Any, default_set: tuple | None, parse=str) -> Any:
    """The value as a config holds it: a scalar, or a tuple of two or more candidates.

    ``a,b`` and lists become tuples (each entry through ``parse``, duplicates dropped in order);
    ``adaptive`` becomes ``default_set``; a single candidate becomes a scalar."""
    if isinstance(value, str) and value.strip().lower() == ADAPTIVE and default_set is not None:
        value = default_set
    elif isinstance(value, str) and "," in value:
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        items = []
        for v in value:
            try:
                v = parse(v) if isinstance(v, str) else v
            except ValueError:
                pass  # validation names the bad value
            if v not in items:
                items.append(v)
        return items[0] if len(items) == 1 else tuple(items)
    return value


def label(value: Any) -> str:
    """A candidate list as one word for run ids and table cells: ``adaptive`` for a tuple."""
    return ADAPTIVE if isinstance(value, tuple) else str(value)


def cell_text(value: Any) -> Any:
    """A table cell: candidates (a tuple, or a list from JSON) as ``a|b``, anything else as it is."""
    return "|".join(map(str, value)) if isinstance(value, (tuple, list)) else value
