"""Secrets in configuration: written inline, as `${ENV_VAR}`, or as `file:/path`.

Resolution happens during validation so the rest of the program only ever sees `SecretStr`. Error
messages name the variable or file, never a value.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def resolve_secret(value: Any) -> Any:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return value
    m = _ENV_REF.match(value.strip())
    if m:
        name = m.group(1)
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return SecretStr(os.environ[name])
    if value.startswith("file:"):
        written = value[5:]  # reported as written: the expanded path may itself come from a secret
        path = Path(os.path.expandvars(written))
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {written}: {exc.strerror}") from None
        return SecretStr(text.rstrip("\r\n"))
    return SecretStr(value)


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
