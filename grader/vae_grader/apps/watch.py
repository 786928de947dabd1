"""Grading on submission: watch the exchange, grade each new submission on the cluster, release its
feedback, so a student sees the grade minutes after submitting.

    python -m vae_grader.apps.watch [--course DIR] [--interval 30] [--once] [--scheduler ADDRESS]

Run by the instructor in the course folder (as for ``nbgrader collect``). Each round:

1. ``nbgrader collect vae --update``: the exchange's own collect (the course's ``SecureCollect``),
   which replaces a student's collected copy when a newer submission is in the inbound folder;
2. every student whose collected submission (its ``timestamp.txt``) differs from the one last
   graded is autograded on the Dask cluster (:mod:`vae_grader.pipeline.dask_runs`), the coordinator
   writing the gradebook;
3. ``nbgrader generate_feedback`` and ``nbgrader release_feedback`` for each of them.

What was graded and released is kept in ``watch-state.json`` in the course folder, written
atomically as soon as a student's grade is in the gradebook and again once the feedback is out; a
restart therefore grades nothing twice and releases the feedback it had not released yet. A
resubmission has a new timestamp, so it is graded again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from vae_grader.paths import ASSIGNMENT, COURSE_ROOT

STATE_FILE = "watch-state.json"


@dataclass
class WatchState:
    """student -> submission timestamp last graded, and last released."""

    path: Path
    graded: dict[str, str] = field(default_factory=dict)
    released: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> WatchState:
        path = root / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path)
        except ValueError as error:
            raise SystemExit(f"error: {path} is not valid JSON ({error}); remove it to regrade all")
        return cls(path, dict(data.get("graded", {})), dict(data.get("released", {})))

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(
            json.dumps({"graded": self.graded, "released": self.released}, indent=1) + "\n"
        )
        os.replace(temporary, self.path)  # a crash leaves the old state or the new, never half


def submitted_timestamps(root: Path) -> dict[str, str]:
    """student -> the timestamp of their collected submission (``timestamp.txt``, as collect writes it)."""
    found = {}
    for stamp in sorted((root / "submitted").glob(f"*/{ASSIGNMENT}/timestamp.txt")):
        found[stamp.parent.parent.name] = stamp.read_text().strip()
    return found


def to_grade(root: Path, state: WatchState) -> list[str]:
    return [s for s, stamp in submitted_timestamps(root).items() if state.graded.get(s) != stamp]


def to_release(root: Path, state: WatchState) -> list[str]:
    return [
        s
        for s, stamp in submitted_timestamps(root).items()
        if state.graded.get(s) == stamp and state.released.get(s) != stamp
    ]


def one_round(root: Path, client, state: WatchState, say) -> list[str]:
    """Collect, grade what is new, release its feedback; the students graded."""
    from vae_grader.pipeline.course_folder import course_config
    from vae_grader.pipeline.dask_runs import autograde_on_cluster
    from vae_grader.pipeline.nbgrader_runs import run_nbgrader

    logs = root / "exports" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ok, line = run_nbgrader(
        root, logs / "watch-collect.log", "collect", ASSIGNMENT, "--update", check=False
    )
    if not ok:
        say(f"collect failed (details in {logs / 'watch-collect.log'}): {line}")
    stamps = submitted_timestamps(root)
    pending = to_grade(root, state)
    if pending:
        say(f"grading {len(pending)} new submission(s): {', '.join(pending)}")

        def graded(student: str) -> None:
            state.graded[student] = stamps[student]
            state.save()

        autograde_on_cluster(
            root,
            course_config(root),
            pending,
            logs,
            client,
            say,
            lambda: time.strftime("%H:%M:%S"),
            on_recorded=graded,
        )
    for student in to_release(root, state):
        for command in ("generate_feedback", "release_feedback"):
            ok, line = run_nbgrader(
                root,
                logs / f"watch-{command}-{student}.log",
                command,
                ASSIGNMENT,
                "--student",
                student,
                *(["--force"] if command == "generate_feedback" else []),
                check=False,
            )
            if not ok:
                say(f"{student}: {command} failed: {line}")
                break
        else:
            state.released[student] = stamps[student]
            state.save()
            say(f"{student}: feedback released")
    return pending


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--course", type=Path, default=COURSE_ROOT, help="the course folder")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between rounds")
    parser.add_argument("--once", action="store_true", help="one round, then exit")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler")
    parser.add_argument("--workers", type=int, help="worker processes of the embedded cluster")
    args = parser.parse_args(argv)
    root = args.course.resolve()
    if not (root / "nbgrader_config.py").is_file():
        print(f"error: {root} is not a course folder (no nbgrader_config.py)", file=sys.stderr)
        return 2

    from vae_grader.pipeline.cluster import PipelineError, grading_client, scheduler_address

    def say(message: str) -> None:
        stamped = message.startswith("[")  # the coordinator's lines carry their own time
        print(message if stamped else f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    state = WatchState.load(root)
    try:
        with grading_client(scheduler_address(args.scheduler), args.workers) as client:
            say(f"watching the exchange for {ASSIGNMENT} (state: {state.path})")
            while True:
                graded = one_round(root, client, state, say)
                if args.once:
                    say(f"graded {len(graded)} submission(s) this round")
                    return 0
                time.sleep(args.interval)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
