"""Configuration of the MQTT publisher (root config field `mqtt: MqttConfig`)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sitivmon.config.secrets import Secret


class MqttTls(BaseModel):
    """TLS to the broker. `insecure` disables certificate and host name checks (lab use only)."""

    model_config = ConfigDict(extra="forbid")

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("mqtt.tls: cert_file and key_file go together")
        return self

    def context(self) -> ssl.SSLContext:
        """An SSLContext that verifies the broker against `ca_file` (or the system store)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None and self.key_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


class MqttConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    tls: MqttTls | None = None
    username: str | None = None
    password: Secret | None = None
    client_id: str = Field(default_factory=lambda: f"sitivmon-{socket.gethostname()}"[:64])
    topic_prefix: str = "sitivmon"
    queue_size: int = Field(default=10_000, ge=1)
    """Messages kept while the broker is unreachable; beyond it the oldest are dropped (counted)."""
    summary_interval_s: float = Field(default=60.0, gt=0)
    backoff_min_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    keepalive_s: int = Field(default=30, ge=5)
    publish_timeout_s: float = Field(default=10.0, gt=0)
    drain_timeout_s: float = Field(default=3.0, ge=0)
    """On shutdown, how long to keep publishing what is queued."""

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError("mqtt.backoff_max_s must be >= mqtt.backoff_min_s")
        if not self.topic_prefix or any(c in self.topic_prefix for c in "+#\0"):
            raise ValueError("mqtt.topic_prefix must be non-empty and free of '+', '#'")
        if self.password is not None and self.username is None:
            raise ValueError("mqtt.password needs mqtt.username")
        return self
