"""SNMPv3 (USM) notifications through pysnmp's message and security subsystems, fed by our socket.

USM (key localisation, HMAC, DES/AES, engine discovery, time windows, Reports) is subtle and already
implemented correctly by pysnmp, so v3 goes through a real `SnmpEngine`. We do not let pysnmp own a
socket: the receiver hands datagrams to `UsmProcessor.process` and pysnmp's replies (INFORM Responses,
discovery Reports) leave through the receiver's own socket via a send-only transport dispatcher.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyasn1.type import univ  # type: ignore[import-untyped]
from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.carrier.base import AbstractTransportDispatcher
from pysnmp.entity import config as snmp_config
from pysnmp.entity import engine as snmp_engine
from pysnmp.entity.rfc3413 import ntfrcv
from pysnmp.proto import rfc1902
from pysnmp.proto.api import v2c

from sitivmon.traps.ber import Oid, Value, VarBind
from sitivmon.traps.config import UsmUserAuth

log = logging.getLogger(__name__)

Sender = Callable[[bytes, tuple[str, int]], None]

_AUTH = {
    None: snmp_config.USM_AUTH_NONE,
    "none": snmp_config.USM_AUTH_NONE,
    "md5": snmp_config.USM_AUTH_HMAC96_MD5,
    "sha": snmp_config.USM_AUTH_HMAC96_SHA,
    "sha1": snmp_config.USM_AUTH_HMAC96_SHA,
    "sha224": snmp_config.USM_AUTH_HMAC128_SHA224,
    "sha256": snmp_config.USM_AUTH_HMAC192_SHA256,
    "sha384": snmp_config.USM_AUTH_HMAC256_SHA384,
    "sha512": snmp_config.USM_AUTH_HMAC384_SHA512,
}
_PRIV = {
    None: snmp_config.USM_PRIV_NONE,
    "none": snmp_config.USM_PRIV_NONE,
    "des": snmp_config.USM_PRIV_CBC56_DES,
    "3des": snmp_config.USM_PRIV_CBC168_3DES,
    "aes": snmp_config.USM_PRIV_CFB128_AES,
    "aes128": snmp_config.USM_PRIV_CFB128_AES,
    "aes192": snmp_config.USM_PRIV_CFB192_AES,
    "aes256": snmp_config.USM_PRIV_CFB256_AES,
    "aes192c": snmp_config.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "aes256c": snmp_config.USM_PRIV_CFB256_AES_BLUMENTHAL,
}

# USM statistics whose increase tells why pysnmp silently refused a message.
_USM_STATS = (
    ("usmStatsUnknownUserNames", "unknown_user"),
    ("usmStatsWrongDigests", "auth_failed"),
    ("usmStatsDecryptionErrors", "decryption_error"),
    ("usmStatsNotInTimeWindows", "not_in_time_window"),
    ("usmStatsUnsupportedSecLevels", "unsupported_security_level"),
    ("usmStatsUnknownEngineIDs", "unknown_engine_id"),
)


def protocol_ids(user: UsmUserAuth) -> tuple[Any, Any]:
    """pysnmp protocol identifiers for a credential's protocol names (case-insensitive, '-' ignored)."""

    def norm(name: str | None) -> str | None:
        return None if name is None else name.lower().replace("-", "").replace("_", "")

    auth = norm(user.auth_protocol)
    priv = norm(user.priv_protocol)
    if auth not in _AUTH:
        raise ValueError(f"credential {user.name!r}: unknown auth protocol {user.auth_protocol!r}")
    if priv not in _PRIV:
        raise ValueError(f"credential {user.name!r}: unknown priv protocol {user.priv_protocol!r}")
    if _PRIV[priv] != snmp_config.USM_PRIV_NONE and not _crypto_available():
        # pysnmp would otherwise reject every encrypted trap at run time as a "decryption error"
        raise ValueError(
            f"credential {user.name!r}: SNMPv3 privacy needs the 'cryptography' package, which is not installed"
        )
    return _AUTH[auth], _PRIV[priv]


def _crypto_available() -> bool:
    try:
        import cryptography.hazmat.primitives.ciphers  # noqa: F401
    except ImportError:
        return False
    return True


class _SendOnlyDispatcher(AbstractTransportDispatcher):  # type: ignore[misc]
    """pysnmp's outbound path (Reports, Responses) redirected to the receiver's socket."""

    def __init__(self, send: Sender) -> None:
        super().__init__()
        self._send = send

    def send_message(self, outgoingMessage: Any, transportDomain: Any, transportAddress: Any) -> None:
        self._send(bytes(outgoingMessage), (str(transportAddress[0]), int(transportAddress[1])))


def _plain(value: Any) -> Value:
    """pyasn1 values (as pysnmp hands them out) to the plain values the BER decoder produces."""
    if isinstance(value, univ.ObjectIdentifier):
        return tuple(int(x) for x in value)
    if isinstance(value, rfc1902.IpAddress):
        return ".".join(str(b) for b in bytes(value.asOctets()))
    if isinstance(value, univ.OctetString):
        return bytes(value.asOctets())
    if isinstance(value, univ.Integer):
        return int(value)
    return None


@dataclass(frozen=True, slots=True)
class V3Notification:
    user: str  # USM user name
    varbinds: tuple[VarBind, ...]
    inform: bool


class UsmProcessor:
    """Authenticates/decrypts v3 notifications and acknowledges INFORMs via pysnmp."""

    def __init__(self, users: tuple[UsmUserAuth, ...], send: Sender, engine_id: bytes | None = None) -> None:
        self.engine_id = engine_id or (b"\x80\x00\x1f\x88\x04" + b"sitiv" + os.urandom(6))
        self._engine = snmp_engine.SnmpEngine(snmpEngineID=v2c.OctetString(self.engine_id))
        self._dispatcher = _SendOnlyDispatcher(send)
        self._engine.register_transport_dispatcher(self._dispatcher)
        self._users = {u.username.encode(): u for u in users}
        self._registered: set[tuple[bytes, bytes]] = set()
        for u in users:
            protocol_ids(u)  # validate early, with the credential name in the message
            self.add_user(u, None)
            for eid in u.engine_ids:
                self.add_user(u, eid)
        self._pending: list[V3Notification] = []
        self._last_pdu_inform = False
        ntfrcv.NotificationReceiver(self._engine, self._on_notification)
        self._engine.observer.register_observer(self._on_request, "rfc3412.receiveMessage:request")
        mib = self._engine.get_mib_builder()
        self._stats = [(mib.import_symbols("__SNMP-USER-BASED-SM-MIB", name)[0], reason) for name, reason in _USM_STATS]

    def knows_user(self, username: bytes) -> bool:
        return username in self._users

    def has_engine(self, username: bytes, engine_id: bytes) -> bool:
        return engine_id == self.engine_id or (username, engine_id) in self._registered

    def add_user(self, user: UsmUserAuth, engine_id: bytes | None) -> None:
        """Register `user` with keys localised to `engine_id` (None: our engine, used by INFORMs)."""
        auth, priv = protocol_ids(user)
        kwargs: dict[str, Any] = {}
        if engine_id is not None:
            kwargs["securityEngineId"] = v2c.OctetString(engine_id)
        snmp_config.add_v3_user(
            self._engine,
            user.username,
            auth,
            user.auth_password.get_secret_value() if user.auth_password else None,
            priv,
            user.priv_password.get_secret_value() if user.priv_password else None,
            **kwargs,
        )
        self._registered.add((user.username.encode(), engine_id or self.engine_id))

    def learn_engine(self, username: bytes, engine_id: bytes) -> None:
        user = self._users[username]
        self.add_user(user, engine_id)

    def _on_request(self, _engine: Any, _point: str, variables: dict[str, Any], _ctx: Any) -> None:
        pdu = variables.get("pdu")
        self._last_pdu_inform = pdu is not None and pdu.tagSet == v2c.InformRequestPDU.tagSet

    def _on_notification(
        self, _engine: Any, _state: Any, _ctx_engine: Any, _ctx_name: Any, var_binds: Any, _cb_ctx: Any
    ) -> None:
        vbs: list[tuple[Oid, Value]] = []
        for name, value in var_binds:
            vbs.append((tuple(int(x) for x in name), _plain(value)))
        self._pending.append(V3Notification(user="", varbinds=tuple(vbs), inform=self._last_pdu_inform))

    def _snapshot(self) -> list[int]:
        return [int(sym.syntax) for sym, _ in self._stats]

    def process(self, data: bytes, addr: tuple[str, int], user: str) -> tuple[list[V3Notification], str | None]:
        """Feed one datagram; returns the notifications it carried and, if refused, a reason."""
        before = self._snapshot()
        self._pending = []
        self._last_pdu_inform = False
        try:
            self._engine.message_dispatcher.receive_message(
                self._engine, udp.DOMAIN_NAME, udp.UdpTransportAddress(addr), data
            )
        except Exception as exc:  # pysnmp raises assorted errors on garbage
            log.debug("v3 message from %s refused: %s", addr[0], type(exc).__name__)
            return [], "decode_error"
        out = [V3Notification(user=user, varbinds=n.varbinds, inform=n.inform) for n in self._pending]
        self._pending = []
        if out:
            return out, None
        after = self._snapshot()
        for (b, a), (_, reason) in zip(zip(before, after, strict=True), self._stats, strict=True):
            if a > b:
                return [], reason
        return [], "decode_error"

    def tick(self, now: float) -> None:
        """Let pysnmp expire its caches (USM timeline, pending state)."""
        self._dispatcher.handle_timer_tick(now)
