"""Profile files, parsed once per modification time: resolving a profile on every poll-loop start
costs a `stat`. Which profiles a configuration names is `sitivmon.config.profiles`.

Relative profile file paths are resolved against `base_dir` (the config file's folder) when given,
else taken as they are.
"""

from __future__ import annotations

from pathlib import Path

from sitivmon.profiles.user import ProfileFileError, UserProfile, load_profile_file

_FILE_CACHE: dict[Path, tuple[int, dict[str, UserProfile]]] = {}


def resolve_path(path: Path, base_dir: Path | None) -> Path:
    return path if path.is_absolute() or base_dir is None else base_dir / path


def read_profile_file(path: Path) -> dict[str, UserProfile]:
    """Parse (or reuse) one profile file; raises ProfileFileError with located problems."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ProfileFileError([((), f"cannot read {path}: {exc.strerror}")]) from None
    cached = _FILE_CACHE.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    profiles = load_profile_file(path)
    _FILE_CACHE[path] = (mtime, profiles)
    return profiles
