"""Profiles: what to read from a device, as data (columns, scalars, types), never as code."""

from sitivmon.profiles.builtin import BUILTIN_PROFILES
from sitivmon.profiles.model import Column, Kind, Profile, Scalar

__all__ = ["BUILTIN_PROFILES", "Column", "Kind", "Profile", "Scalar"]
