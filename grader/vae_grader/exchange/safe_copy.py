"""Copy one inbound entry into the course folder without trusting anything in it.

``collect`` runs as the instructor, often as root, and reads folders a student made and still owns:
the student may change them at any moment, also while collect reads them. nbgrader's
``shutil.copytree`` follows symbolic links (a link to ``source/vae`` copied the master notebook as
the student's work) and stops at a FIFO with a traceback, leaving the class uncollected; a plain
``open`` of a FIFO would block. Here every step is relative to an open folder descriptor and every
open refuses links (``O_NOFOLLOW``) and never blocks (``O_NONBLOCK``), then checks what was really
opened with ``fstat``: a regular file or folder, owned by the entry's owner, the same object the
listing showed, a file with a single name. So whatever the student swaps in between listing and
opening, what is copied is what was checked, and anything else refuses the whole entry with a
one-line reason. The copy is bounded in files, bytes and depth, and stays on the entry's file
system: a mount inside an entry (a FUSE file system the student runs) could answer each read
differently, so a child on another device refuses the entry.

The copy also returns the latest change (``st_ctime``, which no owner can set back) of everything it
copied, read with ``fstat`` from what was really copied: collect compares it with the time the entry
claims, since a file rewritten in place or added in a subfolder leaves the entry's top folder as it
was.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

from vae_grader.exchange.report import printable

_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


class Refused(Exception):
    """The entry is not collected; the message is the one-line reason, for the instructor."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one entry. nbgrader's own ``max_dir_size``/``max_file_size`` give the bytes."""

    max_files: int = 1000  # files and folders; a submission of this course has a handful
    max_bytes: int = 100_000_000
    max_file_bytes: int = 100_000_000
    max_depth: int = 16


@dataclass
class Copied:
    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)  # left out as nbgrader's ignore rules say
    changed: float = 0.0  # the largest st_ctime of the folders and files copied (epoch seconds)


@dataclass(frozen=True)
class _Rules:
    owner: int
    device: int  # the entry's st_dev: a child elsewhere is a mount point
    limits: Limits
    ignore: Sequence[str]
    include: Sequence[str]


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a file"


def open_entry(inbound_fd: int, name: str, expected: os.stat_result) -> int:
    """Open the entry ``name`` of ``inbound/`` as a folder, refusing a link or a swapped object."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=inbound_fd)
    except OSError as error:
        now = _lstat(inbound_fd, name)
        if now is not None and not stat.S_ISDIR(now.st_mode):
            raise Refused(f"is {_kind(now.st_mode)}, not a folder") from None
        raise Refused(f"cannot be opened: {error.strerror}") from None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
        os.close(fd)
        raise Refused("was replaced while collect read it")
    return fd


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None


def copy_entry(
    entry_fd: int,
    dest: str,
    owner: int,
    limits: Limits,
    ignore: Sequence[str] = (),
    include: Sequence[str] = ("*",),
) -> Copied:
    """Copy the open entry folder ``entry_fd`` to the new folder ``dest`` (which must not exist).

    Raises :class:`Refused` on the first thing that is not a regular file or folder of ``owner``;
    the caller removes ``dest`` then. Files matching ``ignore`` (or not ``include``) are checked but
    not copied, as nbgrader's ``CourseDirectory.ignore``/``include`` say.
    """
    top = os.fstat(entry_fd)
    rules = _Rules(owner, top.st_dev, limits, tuple(ignore), tuple(include))
    copied = Copied()
    _check_owner(top, ".", owner)
    _copy_folder(entry_fd, dest, "", 0, rules, copied)
    return copied


def _check_owner(st: os.stat_result, shown: str, owner: int) -> None:
    if st.st_uid != owner:
        raise Refused(f"{shown} belongs to uid {st.st_uid}, not to the entry's owner (uid {owner})")


def _copy_folder(
    fd: int, dest: str | None, rel: str, depth: int, rules: _Rules, copied: Copied
) -> None:
    if depth > rules.limits.max_depth:
        raise Refused(f"{printable(rel)} is nested deeper than {rules.limits.max_depth} folders")
    if dest is not None:
        os.mkdir(dest, 0o755)
    try:
        names = sorted(os.listdir(fd))
    except OSError as error:
        raise Refused(f"{printable(rel or '.')} cannot be listed: {error.strerror}") from None
    if dest is not None:  # after listing: a name added while listing changes the folder too
        copied.changed = max(copied.changed, os.fstat(fd).st_ctime)
    for name in names:
        child = f"{rel}/{name}" if rel else name
        shown = printable(child)
        copied.files += 1
        if copied.files > rules.limits.max_files:
            raise Refused(f"holds more than {rules.limits.max_files} files and folders")
        listed = _lstat(fd, name)
        if listed is None:
            raise Refused(f"{shown} vanished while collect read it")
        _check_owner(listed, shown, rules.owner)
        if listed.st_dev != rules.device:
            raise Refused(f"{shown} is on another file system (a mount point)")
        excluded = any(fnmatch.fnmatch(name, pattern) for pattern in rules.ignore)
        if stat.S_ISDIR(listed.st_mode):
            sub_fd = _open_same(fd, name, _DIR_FLAGS, listed, shown)
            try:
                target = None if dest is None or excluded else os.path.join(dest, name)
                if target is None and dest is not None:
                    copied.skipped.append(shown + "/")
                _copy_folder(sub_fd, target, child, depth + 1, rules, copied)
            finally:
                os.close(sub_fd)
        elif stat.S_ISREG(listed.st_mode):
            if listed.st_nlink != 1:
                raise Refused(f"{shown} is a hard link ({listed.st_nlink} names)")
            keep = not excluded and any(fnmatch.fnmatch(name, p) for p in rules.include)
            if keep and listed.st_size > rules.limits.max_file_bytes:
                keep = False
            if dest is None or not keep:
                if dest is not None:
                    copied.skipped.append(shown)
                continue
            _copy_file(fd, name, os.path.join(dest, name), listed, shown, rules, copied)
        else:
            raise Refused(f"{shown} is {_kind(listed.st_mode)}")


def _open_same(dir_fd: int, name: str, flags: int, listed: os.stat_result, shown: str) -> int:
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as error:
        raise Refused(f"{shown} cannot be opened safely: {error.strerror}") from None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode)) != (
        listed.st_dev,
        listed.st_ino,
        stat.S_IFMT(listed.st_mode),
    ):
        os.close(fd)
        raise Refused(f"{shown} was replaced while collect read it")
    return fd


def _copy_file(
    dir_fd: int,
    name: str,
    target: str,
    listed: os.stat_result,
    shown: str,
    rules: _Rules,
    copied: Copied,
) -> None:
    fd = _open_same(dir_fd, name, _FILE_FLAGS, listed, shown)
    try:
        st = os.fstat(fd)
        _check_owner(st, shown, rules.owner)
        if st.st_nlink != 1:
            raise Refused(f"{shown} is a hard link ({st.st_nlink} names)")
        out = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
        try:
            size = 0
            while chunk := os.read(fd, _CHUNK):
                size += len(chunk)
                copied.bytes += len(chunk)
                if size > rules.limits.max_file_bytes or copied.bytes > rules.limits.max_bytes:
                    raise Refused(
                        f"is larger than the course's limit of {rules.limits.max_bytes} bytes"
                    )
                _write_all(out, chunk)
        finally:
            os.close(out)
        copied.changed = max(copied.changed, os.fstat(fd).st_ctime)  # after reading: covers writes

    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
