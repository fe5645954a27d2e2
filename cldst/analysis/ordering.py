"""The order in which the tables and figures list a setting's values: sparse inits and growth rules
in the order of the config's lists (INITS, GROWTHS), every other setting sorted."""

from __future__ import annotations

from collections.abc import Iterable

from cldst.config import GROWTHS, INITS

CONFIG_ORDER = {"sparse_init": INITS, "growth": GROWTHS}


def ordered(name: str, values: Iterable) -> list:
    """``values`` of the setting ``name``, sorted; for ``sparse_init`` and ``growth``, in the config's
    order, values it does not list last (in the order given)."""
    order = CONFIG_ORDER.get(name)
    if order is None:
        return sorted(values)
    return sorted(values, key=lambda v: order.index(v) if v in order else len(order))
