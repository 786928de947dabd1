"""The grading kernel's session, as ``RobustExecute`` drives it: one cell at a time.

``calls`` sends a cell and waits for its reply, reporting a dead or stuck kernel; ``clock`` is the
CPU-time clock a cell's limit reads; ``time_limits`` charges a submission's budget; ``recovery``
starts a new kernel and replays the state; ``processes`` finds stray processes and why a kernel
died; ``output_limits`` caps what a cell prints; ``judged_cells`` scores test cells through the
judge instead of running them; ``cell_messages`` says what a cell is told.
"""
