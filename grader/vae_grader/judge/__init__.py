"""Scores computed outside the student's kernel.

``rulings`` sends a probe for each test cell and rules on its answer; ``hidden`` holds the hidden tests,
one module per part (or group of parts): the probe the kernel runs (its source alone is sent, after
``hidden.inputs``) beside the verdict the grader runs; ``confined`` runs every verdict in a confined
process (``verdict_worker``), so a hostile answer cannot reach the grader.
"""
