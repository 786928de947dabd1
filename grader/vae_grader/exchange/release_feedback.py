"""``nbgrader release_feedback`` that releases each page on its own and gives it to its student.

nbgrader copies each feedback page to ``<exchange>/<course>/feedback/<hash>.html`` with the mode
the page has in the course folder (normally 0644): anyone who knows the name can read it. The name
is a keyed hash of a secret only the submitter's cache (and the instructor) holds and the folder is
0711 (not listable), so in practice only the student finds it; but the page itself is
world-readable.

When the instructor runs as root (the tests; a grading account with that right), each page is given
to its student's Unix user with mode 0400 before it takes its final name: nobody else but root can
open it, whatever they know, at any moment. As an ordinary user the instructor cannot give a file
away (``chown`` needs privilege) and the pages keep nbgrader's mode; ``docs/exchange.md`` says what
that means and how POSIX ACLs would close it. A page whose student has no Unix user is left as
nbgrader made it, with a one-line warning.

nbgrader's loop read each student's ``submission_secret.txt`` (a file the student wrote) with an
unguarded ``open`` and copied whatever ``*.html`` it found: one missing, empty or non-text secret,
or a folder named ``x.html``, stopped the release for the whole class with a traceback. Here the
loop is the course's own: a student whose feedback folder is malformed is skipped with one line,
in the log and in ``reports/release_feedback-<assignment>.txt``, and the others are released.
Before anything, the exchange's folders must be the instructor's (:mod:`.layout`).
"""

from __future__ import annotations

import glob
import os
import stat

from nbgrader.exchange.default.release_feedback import ExchangeReleaseFeedback
from nbgrader.utils import notebook_hash

from vae_grader.exchange.collect import SECRET_BYTES, valid_secret
from vae_grader.exchange.identity import Roster, RosterError
from vae_grader.exchange.layout import UntrustedExchange, check_course_folder
from vae_grader.exchange.report import CollectReport, printable

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class Malformed(Exception):
    """One student's feedback folder cannot be released; the message is the one-line reason."""


class PrivateReleaseFeedback(ExchangeReleaseFeedback):
    """nbgrader's release, one page at a time, each handed to its owner as it is released."""

    def init_dest(self) -> None:
        groupshared = self.coursedir.groupshared
        try:  # before nbgrader creates feedback/ in a course folder that may not be ours
            check_course_folder(self.root, self.coursedir.course_id, groupshared=groupshared)
            super().init_dest()
            check_course_folder(
                self.root, self.coursedir.course_id, "feedback", groupshared=groupshared
            )
        except UntrustedExchange as error:
            self.fail(str(error))

    def copy_files(self) -> None:
        roster = None
        if os.geteuid() == 0:
            try:
                roster = Roster.load(self.coursedir.root)
            except (OSError, UnicodeDecodeError, RosterError) as error:
                self.fail(f"the course's roster cannot be read: {error}")
        else:
            self.log.info(
                "feedback pages keep nbgrader's mode (readable by whoever knows their secret name): "
                "only root can give each page to its student alone"
            )
        assignment = self.coursedir.assignment_id
        try:
            report = CollectReport.start(
                self.coursedir.root, assignment, self.log, command="release_feedback"
            )
        except OSError as error:
            self.fail(f"release_feedback cannot write its report: {error.strerror}")
        excluded = set(filter(None, (self.coursedir.student_id_exclude or "").split(",")))
        try:
            for html in sorted(glob.glob(os.path.join(self.src_path, "*.html"))):
                folder = os.path.dirname(html)
                student = os.path.basename(os.path.dirname(folder))
                notebook_id = os.path.splitext(os.path.basename(html))[0]
                if student in excluded:
                    continue
                try:
                    page = self._release(html, notebook_id, student, roster)
                except Malformed as problem:
                    report.refuse(f"feedback/{student}/{assignment}", str(problem), student)
                    continue
                except OSError as error:
                    report.refuse(
                        f"feedback/{student}/{assignment}",
                        f"{printable(error.filename or html)}: {error.strerror}",
                        student,
                    )
                    continue
                report.done(f"RELEASED {student} {printable(notebook_id)} as {page}")
        finally:
            report.finish(done="released")

    def _release(self, html: str, notebook_id: str, student: str, roster: Roster | None) -> str:
        """Copy one page to the exchange under its hashed name; the file name it got."""
        secret = self._secret(os.path.dirname(html))
        name = f"{notebook_hash(secret=secret, notebook_id=notebook_id)}.html"
        uid = None if roster is None else roster.uid_of_student(student)
        if roster is not None and uid is None:
            self.log.warning(
                f"feedback for {student} stays readable by name only: no Unix user is {student}"
            )
        src = os.open(html, _READ_FLAGS)
        try:
            st = os.fstat(src)
            if not stat.S_ISREG(st.st_mode):
                raise Malformed(f"{printable(os.path.basename(html))} is not a file")
            tmp = os.path.join(self.dest_path, f"{name[:-5]}-tmp.html")
            try:
                os.unlink(tmp)  # a copy an interrupted release left behind
            except FileNotFoundError:
                pass
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                while chunk := os.read(src, 1 << 20):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view) :]
                if uid is None:
                    os.fchmod(out, stat.S_IMODE(st.st_mode))  # nbgrader's: the page's own mode
                else:
                    os.fchown(out, uid, 0)
                    os.fchmod(out, 0o400)
            finally:
                os.close(out)
        finally:
            os.close(src)
        os.replace(tmp, os.path.join(self.dest_path, name))
        self.log.info(f"Feedback for {student} released to: {os.path.join(self.dest_path, name)}")
        return name

    def _secret(self, folder: str) -> str:
        """The submission secret beside a page, as collect required it (hex); anything else is a
        folder collect never made, so it is refused rather than hashed."""
        try:
            fd = os.open(os.path.join(folder, "submission_secret.txt"), _READ_FLAGS)
        except FileNotFoundError:
            raise Malformed("it has no submission_secret.txt") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise Malformed("its submission_secret.txt is not a file")
            raw = os.read(fd, SECRET_BYTES + 1)
        finally:
            os.close(fd)
        if not valid_secret(raw):
            raise Malformed(
                "its submission_secret.txt is not the hex string nbgrader's submit writes"
            )
        return raw.decode("ascii")
