"""Who a submission is from: the Unix user that owns it, mapped to a student id.

The name in an inbound folder (``bob+vae+<time>+<random>``) is written by whoever made the folder,
so it is only a claim. What a student cannot forge is the owner of the files they create: the
kernel sets it. The course therefore takes a submission's student id from its owner's Unix user
name, through an optional roster, and accepts the folder only when its claimed id agrees.

The roster is ``exchange_roster.csv`` in the course folder (columns ``unix_user,student_id``), for
courses where the gradebook's ids are not the login names. Without it, a student's id is their Unix
user name (what nbgrader's own ``submit`` writes). With it, only the users it lists may submit:
the roster is then the list of the class.
"""

from __future__ import annotations

import csv
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

ROSTER_FILE = "exchange_roster.csv"

# A student id becomes a folder name (submitted/<id>/) and part of the inbound name, which nbgrader
# splits on "+": no separators, no leading dot ("..", ".hidden"), no spaces or control characters.
_VALID_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")


class RosterError(ValueError):
    """The roster file cannot be used as it is; the message names the line."""


def valid_student_id(student_id: str) -> bool:
    return _VALID_ID.fullmatch(student_id) is not None


@dataclass(frozen=True)
class Roster:
    """Unix user name -> student id. ``by_user`` is None when the course has no roster file."""

    by_user: dict[str, str] | None

    @classmethod
    def load(cls, course_root: str | Path) -> Roster:
        path = Path(course_root) / ROSTER_FILE
        if not path.is_file():
            return cls(None)
        by_user: dict[str, str] = {}
        line_of_id: dict[str, int] = {}  # casefolded student id -> the line that gave it
        line_of_user: dict[str, int] = {}
        with path.open(newline="") as fh:
            for number, row in enumerate(csv.DictReader(fh), start=2):
                user = (row.get("unix_user") or "").strip()
                student = (row.get("student_id") or "").strip()
                if not user or not valid_student_id(student):
                    raise RosterError(
                        f"{path.name} line {number}: needs a unix_user and a student_id of letters, "
                        "digits, '.', '_', '@' or '-'"
                    )
                # One id for two users would make either's entries the other's submission; one user
                # twice would keep the last id silently; ids equal but for case are one folder on a
                # case-insensitive disk and one person to a reader.
                if user in line_of_user:
                    raise RosterError(
                        f"{path.name} line {number}: unix_user {user} is already on line "
                        f"{line_of_user[user]}"
                    )
                if student.casefold() in line_of_id:
                    raise RosterError(
                        f"{path.name} line {number}: student_id {student} is already on line "
                        f"{line_of_id[student.casefold()]} (ids are compared ignoring case)"
                    )
                line_of_user[user] = line_of_id[student.casefold()] = number
                by_user[user] = student
        return cls(by_user)

    def student_of_uid(self, uid: int) -> tuple[str | None, str]:
        """(student id or None, the owner as a person reads it) for a file owner's uid."""
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            return None, f"uid {uid} (no such user)"
        if self.by_user is None:
            return (user if valid_student_id(user) else None), user
        return self.by_user.get(user), user

    def user_of_student(self, student_id: str) -> str | None:
        """The Unix user name behind a student id, or None when no user has it."""
        if self.by_user is None:
            return student_id
        for user, student in self.by_user.items():
            if student == student_id:
                return user
        return None

    def uid_of_student(self, student_id: str) -> int | None:
        user = self.user_of_student(student_id)
        if user is None:
            return None
        try:
            return pwd.getpwnam(user).pw_uid
        except KeyError:
            return None
