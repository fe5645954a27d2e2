"""The registry of the methods by name (``cfg.method``): DST, the loop's own, and the field's
sub-network methods."""

from __future__ import annotations

from cldst.method.packnet import PackNet
from cldst.method.subnetwork import DST, SubnetworkMethod
from cldst.method.supsup import SupSup
from cldst.method.wsn import WSN

SUBNETWORK_METHODS: dict[str, type[SubnetworkMethod]] = {"dst": DST, "packnet": PackNet, "supsup": SupSup, "wsn": WSN}
