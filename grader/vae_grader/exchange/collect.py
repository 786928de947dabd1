"""``nbgrader collect`` that takes each student's latest submission only from that student.

nbgrader's collect believes an inbound folder's name: ``bob+vae+2099-01-01 ...`` made by alice
became bob's latest submission (only a "cheating attempt?" line in the log), a name whose time did
not parse stopped collect for the whole class, and ``copytree`` followed links into the instructor's
files. Here every entry is judged before it can count:

- its name must read ``<student>+<assignment>+<time>+<random>`` with a valid student id;
- it must be a real folder (never a link) owned by the Unix user whose student id it claims
  (:mod:`.identity`), as must everything in it (checked while copying, :mod:`.safe_copy`);
- its time, in the name and in ``timestamp.txt``, must parse, agree, and not lie in the future
  beyond ``clock_skew``;
- its ``submission_secret.txt`` must be the hex string nbgrader's submit writes, and no folder in it
  may be named like a feedback page (``*.html``): ``release_feedback`` reads both for every student
  and stopped for the whole class on one bad entry.

Before any of this, the exchange itself must be trusted (:mod:`.layout`): a student who could
replace the course folder would decide what collect reads.

A refused entry counts as if it did not exist, so the student's latest entry that passes is the one
collected (a forgery in bob's name leaves bob's own submissions untouched). Each decision is one
line in the log and in ``reports/collect-<assignment>.txt`` (:mod:`.report`). nbgrader's choice of
submission otherwise stays as documented: the latest, ``--before-duedate``, ``--update``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat
from collections import defaultdict
from dataclasses import dataclass

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.utils import parse_utc
from traitlets import Float, Integer

from vae_grader.exchange.identity import Roster, RosterError, valid_student_id
from vae_grader.exchange.layout import UntrustedExchange, open_course_folder
from vae_grader.exchange.report import CollectReport, printable
from vae_grader.exchange.safe_copy import Limits, Refused, copy_entry, open_entry

_TIMESTAMP_BYTES = 200

# nbgrader's submit writes secrets.token_hex(64): 128 lowercase hex characters. At least 32 (128
# bits) keeps the feedback page's name (a hash of it) unguessable; the bound keeps it short.
SECRET_BYTES = 256
SECRET = re.compile(rb"[0-9a-f]{32,%d}" % SECRET_BYTES)
_SECRET_FILE = "submission_secret.txt"


def valid_secret(raw: bytes) -> bool:
    """Whether ``raw`` is a submission secret release_feedback may hash (and show in a name)."""
    return SECRET.fullmatch(raw) is not None


@dataclass(frozen=True)
class Candidate:
    """An inbound entry whose name, owner and top-level folder passed; its content is checked
    while it is copied."""

    name: str
    student: str
    timestamp: dt.datetime
    listed: os.stat_result


class SecureCollect(ExchangeCollect):
    """nbgrader's collect, choosing among the entries that pass the checks above."""

    clock_skew = Float(
        120.0,
        help="Seconds a submission's time may lie ahead of the grader's clock (clocks drift).",
    ).tag(config=True)

    max_files = Integer(
        1000, help="Files and folders one submission may hold; more refuses it."
    ).tag(config=True)

    max_attempts = Integer(
        10,
        help=(
            "Entries of one student copied at most, latest first, before collect gives up on them: "
            "each attempt reads the entry, and only the student's own entries can fail this late."
        ),
    ).tag(config=True)

    # An honest submit changes its last file within a moment of the time it writes: measured on the
    # course's 2-core test machine under load (9 submits of 3 students, nbgrader 0.9.6 + OwnSubmit),
    # every gap was under 0.05 s ("last change +0.0 s" in each COLLECTED line). The tolerance is
    # therefore the clock skew allowed between the submitting host and the file server's ctimes.
    backdate_tolerance = Float(
        120.0,
        help=(
            "Seconds between the time a submission claims and the last change of anything in it "
            "(which its owner cannot set back) past which the report asks whether it was backdated."
        ),
    ).tag(config=True)

    # ---- choosing ----------------------------------------------------------------------------

    def init_src(self) -> None:
        if self.coursedir.course_id == "":
            self.fail("No course id specified. Re-run with --course flag.")
        assignment = self.coursedir.assignment_id
        self.course_path = os.path.join(self.root, self.coursedir.course_id)
        self.inbound_path = os.path.join(self.course_path, "inbound")
        try:  # opened here, read through this descriptor only: the folder checked is the one read
            self.inbound_fd = open_course_folder(
                self.root,
                self.coursedir.course_id,
                "inbound",
                groupshared=self.coursedir.groupshared,
            )
        except UntrustedExchange as error:
            self.fail(str(error))
        try:
            self.roster = Roster.load(self.coursedir.root)
        except (OSError, UnicodeDecodeError, RosterError) as error:
            self.fail(f"the course's roster cannot be read: {error}")
        try:
            self.report = CollectReport.start(self.coursedir.root, assignment, self.log)
        except OSError as error:
            self.fail(f"collect cannot write its report in {self.coursedir.root}: {error.strerror}")
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                self.duedate = gb.find_assignment(assignment).duedate
            except MissingEntry:
                self.duedate = None

        self.flagged: set[str] = set()
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        self.now = now
        by_student: dict[str, list[Candidate]] = defaultdict(list)
        for name in sorted(os.listdir(self.inbound_fd)):
            try:
                candidate = self._judge_entry(name, now)
            except Refused as refusal:
                self.report.refuse(name, str(refusal), self._owner_of(name))
                continue
            if candidate is not None:
                by_student[candidate.student].append(candidate)
        self.candidates = {s: self._in_preference_order(c) for s, c in sorted(by_student.items())}
        self.src_records = [
            {"username": s, "filename": c[0].name, "timestamp": c[0].timestamp}
            for s, c in self.candidates.items()
        ]

    def _owner_of(self, name: str) -> str:
        """Whose entry ``name`` is, for the report's cap: its owner's student id (or user name),
        else the id it claims; so one student's forgeries in many names all count as theirs."""
        listed = _lstat(self.inbound_fd, name)
        if listed is None:
            return printable(name.split("+", 1)[0])
        student, owner = self.roster.student_of_uid(listed.st_uid)
        return student or owner

    def _judge_entry(self, name: str, now: dt.datetime) -> Candidate | None:
        """A candidate, None for an entry of another assignment or student, or :class:`Refused`."""
        assignment = self.coursedir.assignment_id
        parts = name.rsplit("+", 3)
        if len(parts) != 4 or parts[1] != assignment:
            if f"+{assignment}+" in name or name.startswith(f"{assignment}+"):
                raise Refused(f"its name is not <student>+{assignment}+<time>+<random>")
            return None  # another assignment's submission: not this collect's business
        claimed, _, stamp, _ = parts
        wanted = self.coursedir.student_id
        if not valid_student_id(claimed):
            raise Refused(f"claims an invalid student id {printable(claimed)!r}")
        try:
            listed = os.stat(name, dir_fd=self.inbound_fd, follow_symlinks=False)
            if stat.S_ISLNK(listed.st_mode):
                target = printable(os.readlink(name, dir_fd=self.inbound_fd))
        except OSError as error:
            raise Refused(f"cannot be read: {error.strerror}") from None
        if stat.S_ISLNK(listed.st_mode):
            raise Refused(f"is a symbolic link (to {target}); collect never follows links")
        if not stat.S_ISDIR(listed.st_mode):
            raise Refused("is not a folder")
        student, owner = self.roster.student_of_uid(listed.st_uid)
        if student is None:
            raise Refused(f"is owned by {printable(owner)}, who is not a student of the course")
        if claimed not in (student, owner):
            raise Refused(f"claims to be from {claimed} but is owned by {printable(owner)}")
        if wanted not in ("", "*") and student != wanted:
            return None
        timestamp = self._parse_time(stamp, "the time in its name")
        self._not_in_future(timestamp, "the time in its name", now)
        self._backdated(name, timestamp, listed.st_ctime, student)
        return Candidate(name, student, timestamp, listed)

    def _backdated(self, name: str, timestamp: dt.datetime, ctime: float, student: str) -> float:
        """A student can write any past time into their entry, but not set back a ctime: an honest
        submit changes everything in it within seconds of the time it writes. A gap is reported
        once per entry for the instructor to judge, never refused (copying an exchange resets
        ctimes). Called with the top folder's ctime when listing (so an entry never collected is
        still flagged) and with the latest ctime of everything copied. Returns the gap in s."""
        changed = dt.datetime.fromtimestamp(ctime, dt.timezone.utc).replace(tzinfo=None)
        gap = (changed - timestamp).total_seconds()
        if gap > self.backdate_tolerance and name not in self.flagged:
            self.flagged.add(name)
            self.report.note(
                f"CHECK {printable(name)}: it last changed at {changed:%Y-%m-%d %H:%M:%S} UTC, "
                f"{gap / 60:.1f} min after the time it claims (backdated?)",
                student,
            )
        return gap

    def _parse_time(self, text: str, what: str) -> dt.datetime:
        try:
            parsed = parse_utc(text)
        except Exception:  # the student's text: dateutil raises many kinds, each means "not a time"
            parsed = None
        if not isinstance(parsed, dt.datetime):
            raise Refused(f"{what} is not a time: {printable(text[:60])!r}")
        return parsed

    def _not_in_future(self, when: dt.datetime, what: str, now: dt.datetime) -> None:
        if when > now + dt.timedelta(seconds=self.clock_skew):
            raise Refused(
                f"{what} ({when:%Y-%m-%d %H:%M:%S} UTC) is in the future (now "
                f"{now:%Y-%m-%d %H:%M:%S} UTC, {self.clock_skew:g} s of clock skew allowed)"
            )

    def _in_preference_order(self, candidates: list[Candidate]) -> list[Candidate]:
        """nbgrader's policy: the latest; with --before-duedate, the latest before the due date
        first (then the rest, latest first)."""
        latest = sorted(candidates, key=lambda c: (c.timestamp, c.name), reverse=True)
        if self.before_duedate and self.duedate is not None:
            on_time = [c for c in latest if c.timestamp <= self.duedate]
            return on_time + [c for c in latest if c.timestamp > self.duedate]
        return latest

    # ---- copying -----------------------------------------------------------------------------

    def init_dest(self) -> None:
        pass

    def copy_files(self) -> None:
        assignment = self.coursedir.assignment_id
        try:
            if not self.candidates:
                self.log.warning(
                    f"No submissions of '{assignment}' for course '{self.coursedir.course_id}' "
                    "to collect"
                )
            else:
                self.log.info(
                    f"Processing {len(self.candidates)} submissions of '{assignment}' for course "
                    f"'{self.coursedir.course_id}'"
                )
            for student, candidates in self.candidates.items():
                try:
                    self._collect_student(student, candidates)
                except OSError as error:  # the instructor's own folder: full disk, permissions
                    self.report.note(
                        f"NOTHING collected for {student}: writing {error.filename or 'submitted/'} "
                        f"failed: {error.strerror}"
                    )
        finally:
            os.close(self.inbound_fd)
            self.report.finish()

    def _limits(self) -> Limits:
        return Limits(
            max_files=self.max_files,
            max_bytes=1000 * self.coursedir.max_dir_size,
            max_file_bytes=1000 * self.coursedir.max_file_size,
        )

    def _collect_student(self, student: str, candidates: list[Candidate]) -> None:
        assignment = self.coursedir.assignment_id
        dest = self.coursedir.format_path(self.coursedir.submitted_directory, student, assignment)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        for attempt, candidate in enumerate(candidates):
            if attempt == self.max_attempts:
                self.report.note(
                    f"NOTHING collected for {student}: their latest {attempt} entries were refused "
                    f"and {len(candidates) - attempt} older ones were not tried"
                )
                return
            if os.path.isdir(dest) and not self._replaces(dest, candidate):
                already = (
                    "No newer submission to collect"
                    if self.update
                    else "Submission already exists, use --update to update"
                )
                self.report.note(f"{already}: {student} {assignment}")
                return
            staging = os.path.join(os.path.dirname(dest), f".{assignment}.collecting")
            shutil.rmtree(staging, ignore_errors=True)
            try:
                detail = self._copy_candidate(candidate, staging)
            except Refused as refusal:
                shutil.rmtree(staging, ignore_errors=True)
                self.report.refuse(candidate.name, str(refusal), student)
                continue
            except OSError as error:
                shutil.rmtree(staging, ignore_errors=True)
                self.report.refuse(
                    candidate.name, f"could not be copied: {error.strerror}", student
                )
                continue
            if os.path.isdir(dest):
                shutil.rmtree(dest)
            os.rename(staging, dest)
            self.report.collect(student, candidate.name, detail)
            return
        self.report.note(f"NOTHING collected for {student}: each of their entries was refused")

    def _replaces(self, dest: str, candidate: Candidate) -> bool:
        """nbgrader's rule for a student already in submitted/: --update takes a newer one,
        --before-duedate any other one."""
        existing = self.coursedir.get_existing_timestamp(dest)
        if self.update and (existing is None or candidate.timestamp > existing):
            return True
        return bool(self.before_duedate and existing != candidate.timestamp)

    def _copy_candidate(self, candidate: Candidate, staging: str) -> str:
        entry_fd = open_entry(self.inbound_fd, candidate.name, candidate.listed)
        try:
            copied = copy_entry(
                entry_fd,
                staging,
                candidate.listed.st_uid,
                self._limits(),
                ignore=self.coursedir.ignore,
                include=self.coursedir.include,
            )
        finally:
            os.close(entry_fd)
        self._check_timestamp_file(staging, candidate)
        self._check_feedback_inputs(staging)
        gap = self._backdated(
            candidate.name, candidate.timestamp, copied.changed, candidate.student
        )
        detail = (
            f"submitted {candidate.timestamp:%Y-%m-%d %H:%M:%S} UTC, {copied.files} files, "
            f"last change {gap:+.1f} s after that"
        )
        if copied.skipped:
            detail += (
                f"; left out (nbgrader's ignore rules, size limit): {', '.join(copied.skipped[:5])}"
            )
        return detail

    def _check_feedback_inputs(self, staging: str) -> None:
        """nbgrader's release_feedback opens each student's submission_secret.txt as text, asserts
        it is not empty, and copies every ``*.html`` at the top of their feedback folder (where
        autograde copies the submission's folders too): one bad entry stopped it for the class."""
        path = os.path.join(staging, _SECRET_FILE)
        if not os.path.isfile(path):
            raise Refused(f"has no {_SECRET_FILE}")
        with open(path, "rb") as fh:
            raw = fh.read(SECRET_BYTES + 1)
        if not valid_secret(raw):
            raise Refused(f"its {_SECRET_FILE} is not the hex string nbgrader's submit writes")
        for name in os.listdir(staging):
            if name.endswith(".html") and os.path.isdir(os.path.join(staging, name)):
                raise Refused(f"holds a folder named {printable(name)!r}, as a feedback page is")

    def _check_timestamp_file(self, staging: str, candidate: Candidate) -> None:
        """timestamp.txt decides lateness at autograde: it must exist, parse, agree with the name
        and not lie in the future. Read from the copy, so the student cannot change it after."""
        path = os.path.join(staging, "timestamp.txt")
        if not os.path.isfile(path):
            raise Refused("has no timestamp.txt")
        with open(path, "rb") as fh:
            raw = fh.read(_TIMESTAMP_BYTES + 1)
        text = raw[:_TIMESTAMP_BYTES].decode("utf-8", errors="replace").strip()
        if len(raw) > _TIMESTAMP_BYTES:
            raise Refused("its timestamp.txt is not a time (too long)")
        written = self._parse_time(text, "its timestamp.txt")
        self._not_in_future(written, "its timestamp.txt", self.now)
        if abs((written - candidate.timestamp).total_seconds()) > 1:
            raise Refused(
                f"its timestamp.txt ({written:%Y-%m-%d %H:%M:%S}) and its name "
                f"({candidate.timestamp:%Y-%m-%d %H:%M:%S}) disagree"
            )


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
