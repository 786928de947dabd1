"""Reading a Keras model's architecture: what the tests compare and what the decoder mirrors."""

from __future__ import annotations

from typing import Any


def shape_before_flattening(encoder: Any) -> tuple[int, ...]:
    """The feature-map shape the encoder's Flatten layer receives, e.g. (14, 14, 64).

    The decoder mirrors the encoder, so it takes this shape from the encoder instead of a
    hand-typed constant that silently goes stale when the encoder changes.
    """
    for layer in encoder.layers:
        if type(layer).__name__ == "Flatten":
            return tuple(int(d) for d in layer.input.shape[1:])
    raise ValueError(f"{encoder.name!r} has no Flatten layer, so there is no shape before flattening to mirror.")


def layer_signature(layer: Any) -> dict[str, Any]:
    """The architecture-relevant facts of one Keras layer, comparable across construction orders."""
    config = layer.get_config()
    sig: dict[str, Any] = {"type": type(layer).__name__}
    for key in ("filters", "kernel_size", "strides", "padding", "units", "target_shape"):
        if key in config:
            value = config[key]
            sig[key] = tuple(value) if isinstance(value, list) else value
    if "activation" in config:
        activation = config["activation"]
        sig["activation"] = activation if isinstance(activation, str) else getattr(activation, "__name__", str(activation))
    return sig


def model_signature(model: Any) -> list[dict[str, Any]]:
    """Signatures of the model's computing layers, in order (Input layers left out)."""
    return [layer_signature(layer) for layer in model.layers if type(layer).__name__ != "InputLayer"]
