"""Backend-neutral gradients, so the notebook's tests stay free of ``tf.*`` calls.

Keras 3 has no public "gradient of this function" call; each backend has its own. The notebook
must run on any backend, so the one place that knows about them is here.

The value of the function comes back beside its gradients, already converted to NumPy: under JAX
the function runs on traced arrays, and a tracer kept from inside ``fn`` cannot be read afterwards
(``TracerArrayConversionError``), so a caller that needs the value must get it from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np


def value_and_gradients(
    fn: Callable[..., Any], inputs: Sequence[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``fn(*inputs)`` and d sum(fn(*inputs)) / d input for every input, as NumPy arrays (zeros where
    unconnected). ``fn`` runs once, so a random function's value and gradients belong to one draw."""
    backend = keras.backend.backend()
    arrays = [np.asarray(x, dtype="float32") for x in inputs]
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(x) for x in arrays]
        with tf.GradientTape() as tape:
            for t in tensors:
                tape.watch(t)
            value = fn(*tensors)
            total = tf.reduce_sum(value)
        grads = tape.gradient(total, tensors)
    elif backend == "torch":
        import torch

        tensors = [torch.tensor(x, requires_grad=True) for x in arrays]
        value = fn(*tensors)
        grads = torch.autograd.grad(value.sum(), tensors, allow_unused=True)
        value = value.detach()
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        def summed(*xs: Any) -> tuple[Any, Any]:
            out = fn(*xs)
            return jnp.sum(out), out  # the value leaves the trace as an auxiliary output

        (_, value), grads = jax.value_and_grad(
            summed, argnums=tuple(range(len(arrays))), has_aux=True
        )(*arrays)
    else:
        raise NotImplementedError(f"gradients() does not support the {backend!r} backend")
    return np.asarray(keras.ops.convert_to_numpy(value)), [
        np.zeros_like(x) if g is None else np.asarray(keras.ops.convert_to_numpy(g))
        for x, g in zip(arrays, grads)
    ]


def gradients(fn: Callable[..., Any], inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """d sum(fn(*inputs)) / d input, for every input, as NumPy arrays (zeros where unconnected)."""
    return value_and_gradients(fn, inputs)[1]
