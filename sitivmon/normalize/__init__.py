"""Pure normalisation: raw SNMP readings to exact, monotonic, commune-oriented figures."""
