"""The course's nbgrader exchange: nbgrader's filesystem exchange, with the checks it lacks.

nbgrader's default exchange trusts what a student writes into ``inbound/``: the student id in a
folder's name, its timestamps, and whatever the folder holds (``collect`` runs as the instructor
and copies it with ``shutil.copytree``, which follows symbolic links). Each module here closes one
of those gaps through nbgrader's pluggable exchange classes (``c.ExchangeFactory.*`` in the
course's ``nbgrader_config.py``); ``docs/exchange.md`` explains the threat model and the choice.

- :mod:`.layout`: the exchange's own folders, trusted only when no student can replace them.
- :mod:`.release_assignment`: ``StickyReleaseAssignment``, which leaves the exchange root sticky.
- :mod:`.identity`: which student a Unix user is (roster file, or the user name itself).
- :mod:`.safe_copy`: copy one inbound entry without following links, owner-checked, bounded.
- :mod:`.collect`: ``SecureCollect``, nbgrader's collect choosing only entries that pass.
- :mod:`.report`: the one-line reasons, in the log and in ``reports/collect-<assignment>.txt``.
- :mod:`.release_feedback`: feedback pages readable by their student only, where that is possible.
- :mod:`.private_files`: the assignment's files that autograde must not copy to students.

The student side (``submit`` refusing ``--student`` for someone else, ``submit`` and the fetches
refusing a course folder anyone could have replaced) is ``student_config/nbgrader_config.py``, since
students do not install this package.
"""
