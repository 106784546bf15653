"""Files the program reads and writes, made safe against hostile names, broken entries and crashes.

- `child_path`: a file name taken from data (a clip id) stays a plain name inside its folder.
- `present`: "absent" means no entry at all; an entry that exists but cannot be read (a
  dangling or looping symlink, a folder where a file belongs, no permission) is an error,
  never silently taken as absent.
- `write_new`: a new file only; a symlink planted under its name is not followed.
- `replace_file`: a file replaced whole (temporary name, then rename).
- `folder_lock`: one writer per folder (advisory `flock`, released by the kernel when the
  holder dies, so a killed process never leaves a stale lock). POSIX only (Linux, macOS).
- `staged_update`: the entries a program owns in a folder are replaced as one change (built
  aside, committed, swapped; a crash is rolled forward or back), other entries untouched.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from annotation.errors import DataFileError

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


WORK = ".avvp-work"  # the hidden work folder of `staged_update` inside the folder it updates


@contextmanager
def staged_update(folder: Path, owned: Iterable[str]) -> Iterator[Path]:
    """Replace the `owned` entries of `folder` (relative paths of files or sub-folders) as one change.

    The block writes the new versions into the yielded build folder (inside `folder`, so the
    renames stay on one file system); when it ends without an error a commit file is written,
    then every owned entry is swapped (old version to a trash folder, new one in), and an owned
    entry the block did not write is removed. Everything else in `folder` is left alone. A crash
    before the commit leaves the old entries; after it, `recover_update` finishes the swap.
    Hold `folder`'s lock around it."""
    work = folder / WORK
    recover_update(folder)
    build = work / "build"
    build.mkdir(parents=True)
    try:
        yield build
        written = sorted(rel for rel in owned if os.path.lexists(build / rel))
        commit = {"owned": sorted(owned), "written": written}
        replace_file(work / "commit.json", json.dumps(commit).encode("utf-8"))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    recover_update(folder)


def recover_update(folder: Path) -> None:
    """Finish a committed `staged_update` of `folder` (roll forward), or drop an unfinished one."""
    work = folder / WORK
    commit_file = work / "commit.json"
    if os.path.lexists(commit_file):
        commit = json.loads(commit_file.read_text(encoding="utf-8"))
        for rel in commit["owned"]:
            new, current, old = work / "build" / rel, folder / rel, work / "trash" / rel
            pending = rel in commit["written"] and os.path.lexists(new)
            if pending or rel not in commit["written"]:
                if os.path.lexists(current):  # the previous version goes to the trash
                    old.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(current, old)
            if pending:
                current.parent.mkdir(parents=True, exist_ok=True)
                os.rename(new, current)
    shutil.rmtree(work, ignore_errors=True)
