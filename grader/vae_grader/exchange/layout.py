"""The exchange's own folders, checked before the instructor's commands trust a path in them.

nbgrader's ``release_assignment`` makes the exchange root mode 0777 without the sticky bit, so any
student could rename ``<root>/<course>/`` away and make their own: fetches would then deliver the
student's files, submissions land in a folder the student reads, and ``collect`` take entries from
it. With the sticky bit (1777), or with a root only its owner may write, nobody but the course
folder's owner (and root) can rename or replace it; below it, the course folder (0755) and
``feedback/`` (0711) are writable by their owner only, and ``inbound/`` (2733) may be written by
students but not renamed by them. So the chain is trusted when the root is sticky or closed and
every folder below it is a real folder (never a link) owned by the instructor running the command
or by root; each step is opened ``O_NOFOLLOW`` relative to the one above, so a path checked is the
path used. Anything else stops the command with one line naming the path and the fix.
"""

from __future__ import annotations

import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NONBLOCK


class UntrustedExchange(Exception):
    """A folder of the exchange is not what the instructor's command may trust; one line."""


def _owners_ok(st: os.stat_result, groupshared: bool) -> bool:
    """Root and the instructor running the command may own the exchange's folders; with nbgrader's
    ``groupshared``, so may a fellow instructor of the folder's group (students are not in it)."""
    if st.st_uid in (0, os.geteuid()):
        return True
    return groupshared and st.st_gid in {os.getegid(), *os.getgroups()}


def check_root(root: str) -> None:
    """The root may be written by others only with the sticky bit, which stops them renaming a
    course folder they do not own."""
    try:
        st = os.stat(root)  # the instructor's configured path: a link there is theirs to make
    except OSError as error:
        raise UntrustedExchange(f"the exchange {root} cannot be read: {error.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UntrustedExchange(f"the exchange {root} is not a folder")
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise UntrustedExchange(
            f"the exchange {root} is writable by everyone without the sticky bit, so a student "
            f"can replace the course's folder in it: run `chmod 1777 {root}`"
        )
    if st.st_uid not in (0, os.geteuid()):
        raise UntrustedExchange(
            f"the exchange {root} belongs to uid {st.st_uid}, neither root nor you: have root "
            f"run `chown root: {root}`"
        )


def open_course_folder(
    root: str,
    course_id: str,
    *below: str,
    open_to_students: tuple[str, ...] = ("inbound",),
    groupshared: bool = False,
) -> int:
    """A descriptor of ``root/course_id/below...`` after checking the root and every folder on the
    way: a real folder, owned by root or the caller, writable by others only when it is one of
    ``open_to_students`` (``inbound/``, where students create their entries). The caller closes it.
    """
    check_root(root)
    fd = os.open(root, _DIR_FLAGS)
    path = root
    try:
        for name in (course_id, *below):
            path = os.path.join(path, name)
            try:
                child = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                raise UntrustedExchange(f"Course not found: {path}") from None
            except OSError as error:
                listed = _lstat(fd, name)
                if listed is not None and stat.S_ISLNK(listed.st_mode):
                    raise UntrustedExchange(
                        f"{path} is a symbolic link, not the course's folder: move it aside and "
                        "run `nbgrader release_assignment` again"
                    ) from None
                raise UntrustedExchange(f"{path} cannot be opened: {error.strerror}") from None
            os.close(fd)
            fd = child
            st = os.fstat(fd)
            if not _owners_ok(st, groupshared):
                raise UntrustedExchange(
                    f"{path} belongs to uid {st.st_uid}, neither root nor you, so a student may "
                    "have made it: move it aside and run `nbgrader release_assignment` again"
                )
            if st.st_mode & stat.S_IWOTH and name not in open_to_students:
                raise UntrustedExchange(f"{path} is writable by everyone: run `chmod o-w {path}`")
        return fd
    except BaseException:
        os.close(fd)
        raise


def check_course_folder(root: str, course_id: str, *below: str, groupshared: bool = False) -> None:
    """:func:`open_course_folder` for a command that goes on by path (the chain cannot change)."""
    os.close(open_course_folder(root, course_id, *below, groupshared=groupshared))


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
