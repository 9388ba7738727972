"""SNMP client behind a small interface: the engine sees `SnmpClient`, never the library."""
