"""sitivmon: SNMP monitoring, per-commune usage accounting and cost allocation for an intercommunal syndicate."""

__version__ = "0.1.0"
