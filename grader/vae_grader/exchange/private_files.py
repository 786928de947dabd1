"""The assignment's private files: in ``source/<assignment>/`` but not in its release.

``nbgrader autograde`` copies every file of ``source/<assignment>/`` (notebooks aside) into each
student's ``autograded/`` folder, and ``generate_feedback`` copies the files it finds there into
``feedback/``, which is what students are sent. An instructor's notes or answer data kept beside
the master would reach every student. The files students already have are exactly the release's;
everything else in the source folder is private and goes to ``Autograde.exclude_overwriting``, the
option nbgrader reads as "do not copy from the source folder".
"""

from __future__ import annotations

import os
from pathlib import Path


def _files(folder: Path) -> set[str]:
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), folder))
    return found


def private_source_files(course_root: str | Path) -> dict[str, list[str]]:
    """{assignment: [relative paths of source files its release lacks]}, notebooks excluded (autograde
    never copies those from the source). An assignment not yet released keeps all its files private."""
    root = Path(course_root)
    private: dict[str, list[str]] = {}
    source = root / "source"
    if not source.is_dir():
        return private
    for assignment in sorted(p for p in source.iterdir() if p.is_dir() and not p.is_symlink()):
        released = _files(root / "release" / assignment.name)
        extra = sorted(f for f in _files(assignment) - released if not f.endswith(".ipynb"))
        if extra:
            private[assignment.name] = extra
    return private
