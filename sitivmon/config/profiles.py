"""All the profiles a configuration can name: built-in ones, inline `profiles:` and `profile_files:`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from sitivmon.config.model import CoreConfig
from sitivmon.profiles.builtin import BUILTIN_PROFILES
from sitivmon.profiles.model import Profile
from sitivmon.profiles.registry import read_profile_file, resolve_path
from sitivmon.profiles.user import Problem, ProfileFileError, UserProfile, compile_profile


def user_profiles(config: CoreConfig, base_dir: Path | None = None) -> dict[str, UserProfile]:
    """Inline profiles, then files in order; a later definition of a name does not replace an earlier one
    (crossref reports the duplicate)."""
    out = dict(config.profiles)
    for path in config.profile_files:
        try:
            loaded = read_profile_file(resolve_path(path, base_dir))
        except ProfileFileError:
            continue  # reported by crossref; a running daemon keeps polling what it can
        for name, profile in loaded.items():
            out.setdefault(name, profile)
    return out


def profile_table(config: CoreConfig, base_dir: Path | None = None) -> dict[str, Profile]:
    table = dict(BUILTIN_PROFILES)
    for name, profile in user_profiles(config, base_dir).items():
        table.setdefault(name, compile_profile(name, profile))
    return table


def profile_lookup(config: CoreConfig, base_dir: Path | None = None) -> Callable[[str], Profile]:
    """A `ProfileLookup` for the scheduler, bound to one configuration."""
    return profile_table(config, base_dir).__getitem__


def profile_problems_of(config: CoreConfig, base_dir: Path | None = None) -> Iterator[Problem]:
    """Located problems of user profiles: name clashes and unreadable or invalid profile files."""
    for name in config.profiles:
        if name in BUILTIN_PROFILES:
            yield ("profiles", name), f"{name!r} is a built-in profile name"
    seen = set(config.profiles)
    for i, path in enumerate(config.profile_files):
        try:
            loaded = read_profile_file(resolve_path(path, base_dir))
        except ProfileFileError as exc:
            for loc, msg in exc.problems:
                yield ("profile_files", i, *loc), f"{path.name}: {msg}" if not loc else msg
            continue
        for name in loaded:
            if name in BUILTIN_PROFILES:
                yield ("profile_files", i, name), f"{name!r} is a built-in profile name"
            elif name in seen:
                yield ("profile_files", i, name), f"profile {name!r} is defined twice"
            seen.add(name)
