"""The simulator fixture itself: each recording answers under its own community, values as recorded."""

from __future__ import annotations

import subprocess

from tests.support import snmpsim
from tests.support.procs import require_binary
from tests.support.snmprec import Recording

SYS_DESCR = "1.3.6.1.2.1.1.1.0"


def test_serves_each_recording_under_its_community() -> None:
    snmpget = require_binary("snmpget")
    sources = {
        "dlink-des3200": snmpsim.recording("network/switch/dlink-des3200"),
        "netapp-fas3270": snmpsim.recording("storage/netapp-fas3270"),
    }
    with snmpsim.serve(sources) as sim:
        for community, path in sources.items():
            expected = Recording(path).get(SYS_DESCR)
            assert expected is not None and isinstance(expected.value, bytes)
            out = subprocess.run(
                [snmpget, "-v2c", "-c", community, "-Oqv", "-Ox", sim.address, SYS_DESCR],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout
            assert bytes.fromhex(out.replace('"', "")) == expected.value
    assert not sim.process.alive()
    assert not sim.workdir.exists()
