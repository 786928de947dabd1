"""Scores computed outside the student's kernel.

``rulings`` sends a probe for each test cell and rules on its answer; ``hidden_probes`` is the
probe code the kernel runs for hidden tests (its source is sent into the kernel); ``hidden`` holds
the hidden verdicts, one module per part; ``confined`` runs every verdict in a confined process
(``verdict_worker``), so a hostile answer cannot reach the grader.
"""
