"""SNMPv3 (USM) notifications through pysnmp's message and security subsystems, fed by our socket.

USM (key localisation, HMAC, DES/AES, engine discovery, time windows, Reports) is subtle and already
implemented correctly by pysnmp, so v3 goes through a real `SnmpEngine`. We do not let pysnmp own a
socket: the receiver hands datagrams to `UsmProcessor.process` and pysnmp's replies (INFORM Responses,
discovery Reports) leave through the receiver's own socket via a send-only transport dispatcher.

Keys: a password is hashed into a master key once per user at start (RFC 3414 A.2: a megabyte of
hashing, about 12 ms); localising it to an engine ID is two short hashes, cached in a bounded LRU. So a
message from an engine not seen before can be authenticated cheaply *before* anything is learnt, and
an engine ID is registered only for a message whose digest proves the sender holds the key.
"""

from __future__ import annotations

import collections
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

from sitivmon.snmp.ber import Oid, Value, VarBind
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


_KEY_CACHE_SIZE = 256
_WILDCARD_ENGINE = bytes(5)
"""pysnmp's wildcard security engine ID: a user registered under it matches any engine. Used only for
users without authentication, whose messages carry no proof tied to an engine anyway."""


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


@dataclass(frozen=True, slots=True)
class _MasterKeys:
    auth_id: Any
    priv_id: Any
    auth: Any  # master key (pyasn1 OctetString) or None without authentication
    priv: Any


def _master_keys(user: UsmUserAuth) -> _MasterKeys:
    """Hash the passwords once (the costly part of key localisation, RFC 3414 A.2)."""
    auth_id, priv_id = protocol_ids(user)
    auth = priv = None
    if auth_id != snmp_config.USM_AUTH_NONE:
        password = v2c.OctetString(user.auth_password.get_secret_value() if user.auth_password else "")
        auth = snmp_config.AUTH_SERVICES[auth_id].hash_passphrase(password)
    if priv_id != snmp_config.USM_PRIV_NONE:
        password = v2c.OctetString(user.priv_password.get_secret_value() if user.priv_password else "")
        priv = snmp_config.PRIV_SERVICES[priv_id].hash_passphrase(auth_id, password)
    return _MasterKeys(auth_id, priv_id, auth, priv)


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
        self._masters = {u.username.encode(): _master_keys(u) for u in users}  # validates, named by credential
        self._local_keys: collections.OrderedDict[tuple[bytes, bytes], tuple[Any, Any]] = collections.OrderedDict()
        self._key_cache_size = _KEY_CACHE_SIZE
        for u in users:
            self.add_user(u, None)
            if self._masters[u.username.encode()].auth_id == snmp_config.USM_AUTH_NONE:
                self.add_user(u, _WILDCARD_ENGINE)
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

    def required_flags(self, username: bytes) -> int:
        """The msgFlags security bits (0x01 auth, 0x02 priv) a message of `username` must carry.

        pysnmp checks the security level only for messages to its own engine (RFC 3414 3.2.5); for
        traps, sent by their authoritative engine, a clear-text message naming an authPriv user would
        otherwise be accepted: the credential's level is the minimum, whoever is authoritative.
        """
        m = self._masters[username]
        auth = 0 if m.auth_id == snmp_config.USM_AUTH_NONE else 0x01
        priv = 0 if m.priv_id == snmp_config.USM_PRIV_NONE else 0x02
        return auth | priv

    def has_engine(self, username: bytes, engine_id: bytes) -> bool:
        return (
            engine_id == self.engine_id
            or (username, engine_id) in self._registered
            or (username, _WILDCARD_ENGINE) in self._registered
        )

    def _localised(self, username: bytes, engine_id: bytes) -> tuple[Any, Any]:
        """(auth, priv) keys of `username` localised to `engine_id`, from a bounded LRU cache."""
        key = (username, engine_id)
        keys = self._local_keys.get(key)
        if keys is not None:
            self._local_keys.move_to_end(key)
            return keys
        m = self._masters[username]
        eid = v2c.OctetString(engine_id)
        auth = None if m.auth is None else snmp_config.AUTH_SERVICES[m.auth_id].localize_key(m.auth, eid)
        priv = None if m.priv is None else snmp_config.PRIV_SERVICES[m.priv_id].localize_key(m.auth_id, m.priv, eid)
        keys = (auth, priv)
        self._local_keys[key] = keys
        while len(self._local_keys) > self._key_cache_size:
            self._local_keys.popitem(last=False)
        return keys

    def add_user(self, user: UsmUserAuth, engine_id: bytes | None) -> None:
        """Register `user` with keys localised to `engine_id` (None: our engine, used by INFORMs)."""
        username = user.username.encode()
        m = self._masters[username]
        eid = engine_id or self.engine_id
        auth_key, priv_key = self._localised(username, eid)
        snmp_config.add_v3_user(
            self._engine,
            user.username,
            m.auth_id,
            auth_key,
            m.priv_id,
            priv_key,
            securityEngineId=v2c.OctetString(eid),
            authKeyType=snmp_config.USM_KEY_TYPE_LOCALIZED,
            privKeyType=snmp_config.USM_KEY_TYPE_LOCALIZED,
        )
        self._registered.add((username, eid))

    def authenticates(self, username: bytes, engine_id: bytes, auth_params: bytes, data: bytes) -> bool:
        """Whether `data` carries a valid digest for `username`'s key localised to `engine_id`.

        Checked before an engine ID is learnt, so that only a sender holding the key can make the
        receiver remember anything (RFC 3414 3.2.6, the same check pysnmp then repeats).
        """
        m = self._masters.get(username)
        if m is None or m.auth is None:
            return False
        auth_key, _ = self._localised(username, engine_id)
        try:
            snmp_config.AUTH_SERVICES[m.auth_id].authenticate_incoming_message(
                auth_key, v2c.OctetString(auth_params), data
            )
        except Exception:  # pysnmp signals a wrong digest (or an unlocatable one) with assorted errors
            return False
        return True

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
