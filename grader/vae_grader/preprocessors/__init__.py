"""nbgrader preprocessors, one job each, in the order ``nbgrader_config.py`` runs them.

``intake`` reads a submitted notebook whatever its state; ``restructure`` puts answers back in
the master's cells (``scan`` is its static look at the code); ``execute`` runs the notebook
(``RobustExecute``, with the kernel session of ``vae_grader.kernel``); ``require_verdicts`` lets no
test cell score more than a verdict gave it; ``flags`` marks what needs a person;
``feedback`` renders pages that give no hidden test away.
"""
