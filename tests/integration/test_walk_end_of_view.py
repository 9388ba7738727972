"""A column that ends the agent's MIB view: the response after its last row holds only endOfMibView,
which gufo reports as StopAsyncIteration. The walk must end there with the rows read; the poll used
to fail with PollError(other, "StopAsyncIteration") and the target went down."""

from __future__ import annotations

from sitivmon.config.model import Credential
from sitivmon.snmp.gufo import GufoClient
from tests.support import agents

SYS_OR_UPTIME = "1.3.6.1.2.1.1.9.1.4"  # sysORUpTime: the last column of a view holding only `system`


async def test_walk_of_the_last_column_in_the_view_keeps_its_rows() -> None:
    extra = ["view sysonly included .1.3.6.1.2.1.1", "rocommunity sysonly default -V sysonly"]
    with agents.snmpd_agent(extra=extra, fresh=False) as agent:
        cred = Credential.model_validate({"version": "2c", "community": "sysonly"})
        client = GufoClient(agent.host, agent.port, cred, timeout=1.0, retries=0, max_repetitions=25)
        walk = await client.walk(SYS_OR_UPTIME, max_varbinds=1000)
        assert walk.rows, "sysORTable has rows on net-snmp"
        assert walk.stopped is None
        await client.close()
