"""Root pytest configuration: grading-mode training budget and offline MNIST for every test.

It sits at the root (not in tests/) because `pytest --nbval-lax source/vae/vae.ipynb` must see it
too: the notebook's kernel inherits this process's environment.
"""

import os
from pathlib import Path

os.environ.setdefault("VAE_MODE", "grading")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_shared = Path(__file__).resolve().parent.parent / "shared" / "data" / "mnist.npz"
if _shared.is_file():
    os.environ.setdefault("MNIST_NPZ", str(_shared))
