"""A cheap value that changes whenever a file may have changed, without opening it."""

from __future__ import annotations

from pathlib import Path

FileStamp = tuple[int, int, int] | None


def file_stamp(path: Path) -> FileStamp:
    """(inode, size, mtime in ns), None when the file is absent or unreadable: a rewrite, an append or a
    replacement changes it. Used as a cache key (reports) where reading the file would cost the work
    the cache saves."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
