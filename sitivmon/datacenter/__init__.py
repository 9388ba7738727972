"""Datacenter resources (storage, hosts, PDUs, VMs, sensors) attributed to communes.

Import the handler from `sitivmon.datacenter.handler`; this package's root stays import-light so that
the config model can use `sitivmon.datacenter.config` without a cycle.
"""
