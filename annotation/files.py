"""Files the program reads and writes, made safe against hostile names, broken entries and crashes.

- `child_path`: a file name taken from data (a clip id) stays a plain name inside its folder.
- `present`: "absent" means no entry at all; an entry that exists but cannot be read (a
  dangling or looping symlink, a folder where a file belongs, no permission) is an error,
  never silently taken as absent.
- `write_new`: a new file only; a symlink planted under its name is not followed.
- `replace_file`: a file replaced whole (temporary name, then rename).
- `folder_lock`: one writer per folder (advisory `flock`, released by the kernel when the
  holder dies, so a killed process never leaves a stale lock). POSIX only (Linux, macOS).
- `swap_in`: a folder built beside its target replaces it with two renames; a crash
  between them is repaired by `recover_swap` (the previous folder comes back).
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from annotation.errors import DataFileError

_UMASK = os.umask(0)
os.umask(_UMASK)
_BAD_NAME_CHARS = frozenset("/\\\0") | {chr(c) for c in range(32)} | {"\x7f"}


class FolderBusyError(RuntimeError):
    """Another process holds the folder's lock."""


def child_path(folder: Path, name: str) -> Path:
    """`folder / name`, refused unless `name` is a plain file name (no separator, control
    character, '.' or '..'): names come from data files and must not lead the write elsewhere."""
    if name in ("", ".", "..") or not _BAD_NAME_CHARS.isdisjoint(name):
        raise DataFileError(folder, f"refusing to write {name!r}: not a plain file name inside this folder")
    return folder / name


def write_new(path: Path, data: bytes) -> None:
    """Create `path` (which must not exist; a symlink planted there is not followed) and write `data`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def replace_file(path: Path, data: bytes) -> None:
    """Write `data` to a temporary name beside `path`, then rename it over `path`: a killed
    process leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def present(path: Path, kind: str = "file") -> bool:
    """True for a readable `kind` ('file' or 'folder') at `path`, False when there is no entry at all;
    raises `DataFileError` for an entry that exists but cannot be used as one."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise DataFileError(path, "a symbolic link whose target does not exist") from None
        return False
    except OSError as exc:  # ELOOP (a link loop), EACCES, ENOTDIR, ENAMETOOLONG ...
        raise DataFileError(path, f"exists but cannot be read: {exc.strerror}") from None
    is_dir = stat.S_ISDIR(info.st_mode)
    if kind == "folder" and not is_dir:
        raise DataFileError(path, "is a file; expected a folder")
    if kind == "file" and not stat.S_ISREG(info.st_mode):
        raise DataFileError(path, f"is {'a folder' if is_dir else 'not a regular file'}; expected a file")
    if not os.access(path, os.R_OK | (os.X_OK if is_dir else 0)):
        raise DataFileError(path, "exists but cannot be read: permission denied")
    return True


@contextmanager
def folder_lock(folder: Path, holder: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on `folder` for the block. Without `wait`, a folder another process
    holds is refused at once with `FolderBusyError` naming `holder` (what holds such locks)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise FolderBusyError(f"{folder} is in use by another {holder} (it holds the folder's lock); "
                                  "wait for it to end or choose another folder") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def sibling(target: Path, tag: str) -> Path:
    """A fresh hidden folder next to `target` (same file system, so renames are atomic), with the
    permissions a plain mkdir gives (mkdtemp makes 0700)."""
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.{tag}-", dir=target.parent))
    os.chmod(folder, 0o777 & ~_UMASK)
    return folder


def swap_in(built: Path, target: Path) -> None:
    """Replace folder `target` (if any) by `built`, a sibling made with `sibling(target, 'new')`."""
    old = None
    if target.exists():
        old = sibling(target, "old")
        os.rename(target, old / "previous")
    os.rename(built, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_swap(target: Path) -> None:
    """Repair what a process killed inside `swap_in` (or while building) left beside `target`:
    the previous folder comes back if `target` is missing; unfinished builds are removed.
    Call it holding the lock of `target`'s parent, so no live writer owns these folders."""
    for entry in sorted(target.parent.glob(f".{target.name}.old-*")):
        previous = entry / "previous"
        if previous.is_dir() and not target.exists():
            os.rename(previous, target)
        shutil.rmtree(entry, ignore_errors=True)
    for entry in target.parent.glob(f".{target.name}.new-*"):
        shutil.rmtree(entry, ignore_errors=True)
