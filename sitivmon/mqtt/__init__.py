"""MQTT publication of link states, link events and per-commune summaries (aiomqtt)."""
