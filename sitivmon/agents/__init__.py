"""Local SNMP agents for the demo, the tests and the benchmarks: real net-snmp snmpd, optionally
inside network namespaces with veth pairs whose counters move."""
