"""The instructor's measuring tools, outside the grader package (never installed with it):
``benchmark``, ``throughput``, ``load_test``, ``calibrate``, ``study`` and ``sandbox_overhead``.
Run from the course root, e.g. ``python -m measure.benchmark``; results: docs/measurements.md."""
