"""Grading a class: plain nbgrader commands, each student a task on a Dask cluster.

``grade_class`` runs the steps (release, autograde, feedback, export) for a list of submissions;
``cluster`` connects to a Dask scheduler or starts a LocalCluster; ``dask_runs`` sends one task
per student and records each result as it arrives (``gradebook_writer``, the only writer of the
central gradebook); ``grading_task`` is what a task carries and ``worker_grading`` what a worker
does with it; ``nbgrader_runs`` runs nbgrader's commands; ``course_folder`` reads the course's
configuration; ``report`` prints the grade table.
"""
