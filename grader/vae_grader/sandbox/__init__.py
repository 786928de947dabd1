"""Where student code runs: a bubblewrap sandbox around the kernel and around the verdict process.

``bwrap`` finds and checks bubblewrap; ``environment`` says what the kernel may see of the
grader's environment and which Keras backend it runs; ``confine`` builds the confinement (paths,
limits, user ids); ``cpu_share`` gives each kernel its cgroup share of the CPU; ``kernels`` is the
jupyter_client provisioner and kernel manager that start the sandboxed kernel.
"""
