"""Commands: ``python -m vae_grader.apps.demo`` (make demo), ``vae_grader.apps.release`` (the
student version) and ``vae_grader.apps.watch`` (grade each submission as it arrives)."""
