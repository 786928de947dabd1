"""Backend-neutral gradients, so the notebook's tests stay free of ``tf.*`` calls.

Keras 3 has no public "gradient of this function" call; each backend has its own. The notebook
must run on any backend, so the one place that knows about them is here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np


def gradients(fn: Callable[..., Any], inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """d sum(fn(*inputs)) / d input, for every input, as NumPy arrays (zeros where unconnected)."""
    backend = keras.backend.backend()
    arrays = [np.asarray(x, dtype="float32") for x in inputs]
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(x) for x in arrays]
        with tf.GradientTape() as tape:
            for t in tensors:
                tape.watch(t)
            total = tf.reduce_sum(fn(*tensors))
        grads = tape.gradient(total, tensors)
    elif backend == "torch":
        import torch

        tensors = [torch.tensor(x, requires_grad=True) for x in arrays]
        total = fn(*tensors).sum()
        grads = torch.autograd.grad(total, tensors, allow_unused=True)
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        grads = jax.grad(lambda *xs: jnp.sum(fn(*xs)), argnums=tuple(range(len(arrays))))(*arrays)
    else:
        raise NotImplementedError(f"gradients() does not support the {backend!r} backend")
    return [
        np.zeros_like(x) if g is None else np.asarray(keras.ops.convert_to_numpy(g))
        for x, g in zip(arrays, grads)
    ]
