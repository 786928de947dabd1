"""The sample submissions: test data of the grader, built from the master and the release.

* :mod:`vae_samples.kit`: the helpers that build a submission from the master and the release;
* :mod:`vae_samples.demo`: the demo class that ``make demo`` and the tests grade, with its
  manifest ``demo_manifest.md`` (``python -m vae_grader.apps.demo --manifest``);
* :mod:`vae_samples.adversarial`: the hardening corpus.

They live under tests/, not in the grader package. pytest puts tests/ on ``sys.path`` (tests/
has no ``__init__.py``: pytest's default prepend import mode), and the grader's commands that
grade them (``make demo``, ``make benchmark``) load them with :func:`vae_grader.paths.samples`.
"""
