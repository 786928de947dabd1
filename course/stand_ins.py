"""Tiny stand-in models for the tests, so each graded part is tested on its own.

A student whose encoder is broken must still earn the points for a correct ``build_vae`` or
``build_manifold``; the tests therefore plug these stand-ins in where the student's other parts
would go. None of them is a solution: they are deliberately not the course architecture.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers


def stand_in_encoder(latent_dim: int = 2) -> keras.Model:
    """Image -> [z_mean, z_log_var] through a single Dense layer each."""
    image = keras.Input(shape=(28, 28, 1))
    flat = layers.Flatten()(image)
    return keras.Model(
        image,
        [layers.Dense(latent_dim)(flat), layers.Dense(latent_dim)(flat)],
        name="stand_in_encoder",
    )


def stand_in_decoder(latent_dim: int = 2) -> keras.Model:
    """z -> 28x28x1 image in [0, 1] through one sigmoid Dense layer."""
    z = keras.Input(shape=(latent_dim,))
    pixels = layers.Dense(28 * 28, activation="sigmoid")(z)
    return keras.Model(z, layers.Reshape((28, 28, 1))(pixels), name="stand_in_decoder")


class ProbeDecoder(keras.Model):
    """A decoder whose image reveals the code it was given, and that counts how it was called.

    Pixel (0, 0) of each decoded tile equals z[0] and pixel (0, 1) equals z[1], so a test can read
    back which latent point was decoded into which tile. ``calls`` records the batch size of every
    ``__call__``/``predict`` so the test can tell one batched call from a per-point loop.
    """

    def __init__(self, latent_dim: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[int] = []
        self.dense = layers.Dense(28 * 28, use_bias=False)
        self.reshape = layers.Reshape((28, 28, 1))
        self.dense.build((None, latent_dim))
        kernel = np.zeros((latent_dim, 28 * 28), dtype="float32")
        kernel[0, 0] = 1.0
        kernel[1, 1] = 1.0
        self.dense.set_weights([kernel])

    def call(self, z: Any) -> Any:
        return self.reshape(self.dense(z))

    def __call__(self, z: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(int(np.shape(z)[0]))
        return super().__call__(z, *args, **kwargs)

    def predict(self, z: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls.append(int(np.shape(z)[0]))
        return keras.ops.convert_to_numpy(
            self.call(keras.ops.convert_to_tensor(np.asarray(z, dtype="float32")))
        )


def smooth_decoder(latent_dim: int = 2, seed: int = 0) -> keras.Model:
    """A fixed random decoder whose images change smoothly with z (for layout tests)."""
    rng = np.random.default_rng(seed)
    z = keras.Input(shape=(latent_dim,))
    dense = layers.Dense(28 * 28, activation="sigmoid")
    model = keras.Model(z, layers.Reshape((28, 28, 1))(dense(z)), name="smooth_decoder")
    dense.set_weights(
        [rng.normal(0, 1.0, (latent_dim, 28 * 28)).astype("float32"), np.zeros(28 * 28, "float32")]
    )
    return model
