"""SNMP trap receiver: fast v1/v2c decoding, pysnmp for v3 USM, flood-safe link events."""
