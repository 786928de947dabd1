"""The grading kernel's session, as ``RobustExecute`` drives it: one cell at a time.

``session`` sends a cell and waits for its reply, reporting a dead or stuck kernel, and starts a new
kernel with the state replayed; ``clock`` is the CPU-time clock a cell's limit reads; ``time_limits``
charges a submission's budget; ``processes`` finds stray processes and why a kernel died;
``output_limits`` caps what a cell prints; ``judged_cells`` scores test cells through the judge
instead of running them; ``cell_messages`` says what a cell is told.
"""
