"""``make demo``: the whole instructor pipeline on the sample submissions, from a fresh clone.

    python -m vae_grader.apps.demo              # release, submit, autograde, feedback, export, table
    python -m vae_grader.apps.demo --manifest   # print what every sample student should score
    python -m vae_grader.apps.demo --only NAME… # grade just these samples, in a scratch copy of the course
    python -m vae_grader.apps.demo --scheduler tcp://HOST:8786   # grade on an existing Dask cluster

Steps: regenerate ``release/`` from the master, write the demo submissions and the adversarial
corpus (test data: ``vae_samples`` in tests/, see :func:`vae_grader.paths.samples`) to
``submitted/<student>/vae/``, then run plain nbgrader commands in the course root, each student's
``nbgrader autograde`` a task on a Dask cluster (see grader/vae_grader/pipeline/grade_class.py; an embedded
``LocalCluster`` unless ``--scheduler`` or ``$VAE_DASK_SCHEDULER`` names one), with a progress bar, print the grade table with the manifest's expected totals, the
grade CSV and the feedback pages. Exits 1 when any student's per-cell points differ from the
manifest, so the command doubles as an end-to-end check. Re-running it regrades from scratch and
prints the same table. ``--manifest`` output is tests/vae_samples/demo_manifest.md (kept in sync by
a test).

``--only`` grades the named samples (demo or adversarial) the same way, but in a scratch copy of the
course with its own SQLite gradebook, so checking one new case neither waits for the whole class nor
drops the other students' grades from the course's gradebook (the pipeline forgets the samples it
wrote earlier that are not in the run). The scratch folder is kept and printed.
"""

from __future__ import annotations

import argparse
import sys
import time

from vae_grader.paths import COURSE_ROOT, samples
from vae_grader.submissions import Submission

MANIFEST_TITLE = "Demo submissions: expected points"


def demo_submissions() -> list[Submission]:
    """The demo class (``vae_samples.demo``)."""
    return list(samples("demo").SUBMISSIONS)


def adversarial_submissions() -> list[Submission]:
    """The hardening corpus (``vae_samples.adversarial``)."""
    return list(samples("adversarial").SUBMISSIONS)


def all_submissions() -> list[Submission]:
    return demo_submissions() + adversarial_submissions()


def chosen_submissions(names: list[str]) -> list[Submission]:
    """The samples named in ``names``, in the order given; an unknown name is a one-line error."""
    import difflib

    known = {s.student: s for s in all_submissions()}
    unknown = [name for name in names if name not in known]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=3)
            hints.append(f"{name} (did you mean {', '.join(close)}?)" if close else name)
        raise SystemExit(
            f"error: no sample submission named {'; '.join(hints)}; "
            f"`python -m vae_grader.apps.demo --manifest` lists the demo students, "
            f"tests/vae_samples/adversarial.py the corpus"
        )
    return [known[name] for name in dict.fromkeys(names)]


def manifest() -> str:
    import nbformat

    from vae_grader.paths import MASTER
    from vae_grader.pipeline.report import manifest_markdown
    from vae_grader.submissions import points_by_cell

    table = manifest_markdown(
        demo_submissions(), points_by_cell(nbformat.read(MASTER, as_version=4)), MANIFEST_TITLE
    )
    return table + "\n" + samples("demo").catalogue_markdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--manifest",
        action="store_true",
        help="print the expected points of every demo student and exit",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="grade only these sample students (demo or adversarial) in a scratch course copy",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="grade on this Dask scheduler (default: $VAE_DASK_SCHEDULER, else an embedded LocalCluster)",
    )
    args = parser.parse_args(argv)
    if args.manifest:
        print(manifest())
        return 0

    from vae_grader.pipeline.cluster import PipelineError
    from vae_grader.pipeline.grade_class import course_config, run_pipeline
    from vae_grader.apps.release import generate_release
    from vae_grader.pipeline.report import cell_differences, grade_table

    start = time.monotonic()
    course_root = COURSE_ROOT
    if args.only:
        import os
        import tempfile
        from pathlib import Path

        from vae_grader.pipeline.course_folder import copy_course

        submissions = chosen_submissions(args.only)
        os.environ.pop("NBGRADER_DB_URL", None)  # the scratch copy keeps its own gradebook
        course_root = copy_course(Path(tempfile.mkdtemp(prefix="vae-only-")) / "course")
    else:
        print(
            "Regenerating release/ from the master (nbgrader generate_assignment in a scratch copy) ...",
            flush=True,
        )
        generate_release()
        submissions = all_submissions()
    print(
        f"Grading {len(submissions)} sample submission(s) in {course_root} with plain nbgrader commands ...",
        flush=True,
    )
    try:
        run = run_pipeline(
            course_root,
            submissions,
            progress=lambda message: print(message, flush=True),
            scheduler=args.scheduler,
            bar=True,
        )
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    print()
    print(grade_table(run, submissions))
    print()
    print(f"Grade CSV:      {run.csv_path.relative_to(course_root)}")
    from sqlalchemy.engine import make_url

    db_url = make_url(course_config(course_root).db_url).render_as_string(hide_password=True)
    print(f"Gradebook:      {db_url} (set NBGRADER_DB_URL for another database)")
    print("Feedback pages:")
    for submission in submissions:
        page = run.results[submission.student].feedback
        print(
            f"  {submission.student:<{max(len(s.student) for s in submissions)}}  "
            f"{page.relative_to(course_root) if page else '(none written)'}"
        )
    seconds = sorted(r.autograde_seconds for r in run.results.values())
    median = (
        seconds[len(seconds) // 2]
        if len(seconds) % 2
        else sum(seconds[len(seconds) // 2 - 1 : len(seconds) // 2 + 1]) / 2
    )
    print(
        f"\nAutograde per submission: median {median:.1f} s, max {seconds[-1]:.1f} s; "
        f"whole demo {time.monotonic() - start:.0f} s"
    )
    mismatched = [s.student for s in submissions if cell_differences(run, s)]
    if mismatched:
        print(
            f"\n✗ {len(mismatched)} student(s) differ from the manifest: {', '.join(mismatched)}",
            file=sys.stderr,
        )
        return 1
    print(f"\n✓ all {len(submissions)} students scored exactly what the manifest expects")
    return 0


if __name__ == "__main__":
    sys.exit(main())
