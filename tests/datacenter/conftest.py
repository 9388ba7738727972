from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sitivmon.agents.scripted import ScriptedTable, demo_tables
from sitivmon.agents.snmpd import Snmpd, SnmpdSpec
from sitivmon.app.config import SitivmonConfig, parse_config
from sitivmon.config.model import Credential
from sitivmon.snmp.gufo import GufoClient
from tests.support.procs import free_udp_port, require_binary

REPO = Path(__file__).resolve().parents[2]
COMMUNES = """
communes:
  - {id: givors, name: Givors, insee: "69091"}
  - {id: grigny, name: Grigny, insee: "69096"}
  - {id: pierre-benite, name: Pierre-Bénite, insee: "69152"}
  - {id: rive-de-gier, name: Rive-de-Gier, insee: "42186"}
  - {id: vaulx-en-velin, name: Vaulx-en-Velin, insee: "69256"}
  - {id: venissieux, name: Vénissieux, insee: "69259"}
  - {id: corbas, name: Corbas, insee: "69273"}
  - {id: saint-chamond, name: Saint-Chamond, insee: "42207"}
"""


def make_config(body: str, base_dir: Path | None = None) -> SitivmonConfig:
    text = COMMUNES + "credentials:\n  lab: {version: 2c, community: public}\n" + body
    return parse_config(text, "<test>", base_dir)


class Agent:
    def __init__(self, snmpd: Snmpd, tables: dict[str, ScriptedTable]) -> None:
        self.snmpd = snmpd
        self.tables = tables
        self.port = snmpd.spec.port

    def client(self, max_repetitions: int = 25) -> GufoClient:
        cred = Credential.model_validate({"version": "2c", "community": "public"})
        return GufoClient("127.0.0.1", self.port, cred, timeout=2.0, retries=1, max_repetitions=max_repetitions)

    def write(self, name: str, values: dict[str, tuple[str, Any]]) -> None:
        self.tables[name].write(values)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """A real snmpd serving this machine's HOST-RESOURCES/UCD MIBs plus scripted demo tables."""
    require_binary("snmpd")
    work = tmp_path_factory.mktemp("snmpd")
    tables = {t.data.stem: t for t in demo_tables(work / "scripted", t0=0)}
    spec = SnmpdSpec(
        port=free_udp_port(),
        pass_persist=[t.registration for t in tables.values()],
        extra=["includeAllDisks 10%"],
    )
    snmpd = Snmpd(spec, work / "agent")
    try:
        yield Agent(snmpd, tables)
    finally:
        snmpd.stop()
