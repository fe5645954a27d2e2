"""The registry of the field's sub-network methods by name (``cfg.method``); "dst" is the loop's own
method (cldst/method/dst.py) and has no entry."""

from __future__ import annotations

from cldst.method.packnet import PackNet
from cldst.method.subnetwork import SubnetworkMethod
from cldst.method.supsup import SupSup
from cldst.method.wsn import WSN

SUBNETWORK_METHODS: dict[str, type[SubnetworkMethod]] = {"packnet": PackNet, "supsup": SupSup, "wsn": WSN}
