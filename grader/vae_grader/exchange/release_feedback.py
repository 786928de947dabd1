"""``nbgrader release_feedback`` that gives each page to its student alone, where it can.

nbgrader copies each feedback page to ``<exchange>/<course>/feedback/<hash>.html`` with the mode
the page has in the course folder (normally 0644): anyone who knows the name can read it. The name
is a keyed hash of a secret only the submitter's cache (and the instructor) holds and the folder is
0711 (not listable), so in practice only the student finds it; but the page itself is
world-readable.

When the instructor runs as root (the tests; a grading account with that right), each released page
is given to its student's Unix user with mode 0400: nobody else but root can open it, whatever
they know. As an ordinary user the instructor cannot give a file away (``chown`` needs
privilege) and the pages keep nbgrader's mode; ``docs/exchange.md`` says what that means and how
POSIX ACLs would close it. A page whose student has no Unix user is left as nbgrader made it, with a
one-line warning.
"""

from __future__ import annotations

import glob
import os

from nbgrader.exchange.default.release_feedback import ExchangeReleaseFeedback
from nbgrader.utils import notebook_hash

from vae_grader.exchange.identity import Roster, RosterError


class PrivateReleaseFeedback(ExchangeReleaseFeedback):
    """nbgrader's release, then each page handed to its owner (root only)."""

    def copy_files(self) -> None:
        super().copy_files()
        if os.geteuid() != 0:
            self.log.info(
                "feedback pages keep nbgrader's mode (readable by whoever knows their secret name): "
                "only root can give each page to its student alone"
            )
            return
        try:
            roster = Roster.load(self.coursedir.root)
        except (OSError, UnicodeDecodeError, RosterError) as error:
            self.fail(f"the course's roster cannot be read: {error}")
        excluded = set(filter(None, (self.coursedir.student_id_exclude or "").split(",")))
        for student, notebook_id, secret in self._released():
            if student in excluded:
                continue
            page = os.path.join(
                self.dest_path, f"{notebook_hash(secret=secret, notebook_id=notebook_id)}.html"
            )
            uid = roster.uid_of_student(student)
            if uid is None:
                self.log.warning(
                    f"feedback for {student} stays readable by name only: no Unix user is {student}"
                )
                continue
            try:
                fd = os.open(page, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    os.fchown(fd, uid, 0)
                    os.fchmod(fd, 0o400)
                finally:
                    os.close(fd)
            except OSError as error:
                self.log.warning(
                    f"feedback for {student} keeps nbgrader's mode: {page}: {error.strerror}"
                )

    def _released(self) -> list[tuple[str, str, str]]:
        """(student id, notebook id, submission secret) of each page nbgrader just released, found
        the way nbgrader finds them: feedback/<student>/<assignment>/<notebook>.html."""
        found = []
        pattern = os.path.join(self.src_path, "*.html")
        for html in sorted(glob.glob(pattern)):
            folder = os.path.dirname(html)
            student = os.path.basename(os.path.dirname(folder))
            secret_path = os.path.join(folder, "submission_secret.txt")
            if not os.path.isfile(secret_path):
                continue
            with open(secret_path) as fh:
                secret = fh.read()
            found.append((student, os.path.splitext(os.path.basename(html))[0], secret))
        return found
