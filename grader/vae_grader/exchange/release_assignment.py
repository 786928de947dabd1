"""``nbgrader release_assignment`` that leaves the exchange root sticky.

nbgrader's release makes the root mode 0777 (``ensure_root``): anyone may create there, and also
rename or delete what others made, so a student could put their own course folder in place of the
instructor's (:mod:`.layout`). The sticky bit (1777) keeps "anyone may create" and takes away the
renaming of others' folders. The release sets it when it may (the root is the caller's, or the
caller is root); when it may not, it stops with the command that fixes it, since every other
command of the course refuses a root that is writable by all without it.
"""

from __future__ import annotations

import os
import stat

from nbgrader.exchange.default.release_assignment import ExchangeReleaseAssignment


class StickyReleaseAssignment(ExchangeReleaseAssignment):
    """nbgrader's release, with the exchange root made (or required to be) sticky."""

    def ensure_root(self) -> None:
        super().ensure_root()
        mode = os.stat(self.root).st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            try:
                os.chmod(self.root, stat.S_IMODE(mode) | stat.S_ISVTX)
            except OSError as error:
                self.fail(
                    f"the exchange {self.root} is writable by everyone without the sticky bit and "
                    f"cannot be fixed here ({error.strerror}): have its owner run "
                    f"`chmod 1777 {self.root}`"
                )
