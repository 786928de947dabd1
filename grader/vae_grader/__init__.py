"""The instructor side of the course: release generation and the nbgrader grading pipeline."""
