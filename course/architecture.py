"""Reading a Keras model's architecture by what it computes, not by how it was written down.

Students write the same network in many ways: layers in a functional graph, blocks of
``keras.Sequential`` nested inside it, ``Conv2D(..., activation="relu")`` or a ``Conv2D`` followed
by ``layers.ReLU()``. The checks compare a *canonical form*: nested models flattened into their
layers, ``InputLayer``s dropped, and activation layers folded into the layer before them, so that
every way of writing the same function reads the same. A genuinely different function (another
stride, another activation, a missing layer) still reads differently.
"""

from __future__ import annotations

from typing import Any

_ACTIVATION_LAYERS = ("Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "PReLU")
_SKIPPED = ("InputLayer", "Identity")


def flat_layers(model: Any) -> list[Any]:
    """The model's layers in order, with every nested model (Sequential or functional) expanded."""
    out: list[Any] = []
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers") and type(layer).__name__ in (
            "Functional",
            "Sequential",
            "Model",
        ):
            out += flat_layers(layer)
        else:
            out.append(layer)
    return out


def _activation_name(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # a serialised activation
        return str(value.get("config", value.get("class_name", value)))
    return getattr(value, "__name__", str(value))


def _activation_of_layer(layer: Any) -> str | None:
    """What an activation layer computes, as the name Conv2D/Dense would use; None if it is no plain activation."""
    kind = type(layer).__name__
    config = layer.get_config()
    if kind == "Activation":
        return _activation_name(config.get("activation"))
    if kind == "ReLU":
        plain = (
            config.get("max_value") is None
            and not config.get("negative_slope")
            and not config.get("threshold")
        )
        return "relu" if plain else None
    if kind == "LeakyReLU":
        slope = config.get("negative_slope", config.get("alpha"))
        return "relu" if slope == 0 else None
    if kind == "Softmax":
        return "softmax"
    return None


def layer_signature(layer: Any) -> dict[str, Any]:
    """The architecture-relevant facts of one Keras layer, comparable across construction orders."""
    config = layer.get_config()
    sig: dict[str, Any] = {"type": type(layer).__name__}
    for key in (
        "filters",
        "kernel_size",
        "strides",
        "padding",
        "units",
        "target_shape",
        "use_bias",
    ):
        if key in config:
            value = config[key]
            sig[key] = tuple(value) if isinstance(value, list) else value
    if "activation" in config:
        sig["activation"] = _activation_name(config["activation"])
    return sig


def model_signature(model: Any) -> list[dict[str, Any]]:
    """The canonical form: signatures of the computing layers in order (see the module docstring)."""
    signatures: list[dict[str, Any]] = []
    for layer in flat_layers(model):
        kind = type(layer).__name__
        if kind in _SKIPPED:
            continue
        if kind in _ACTIVATION_LAYERS:
            activation = _activation_of_layer(layer)
            previous = signatures[-1] if signatures else None
            if (
                activation is not None
                and previous is not None
                and previous.get("activation") in ("linear", None)
                and "activation" in previous
            ):
                previous["activation"] = activation
                continue
            if activation == "linear":
                continue
            signatures.append({"type": "Activation", "activation": activation or kind})
            continue
        signatures.append(layer_signature(layer))
    return signatures


NON_NEGATIVE = ("relu", "relu6", "softplus", "sigmoid", "exponential", "hard_sigmoid", "softmax")
"""Activations whose output is never negative: fed into a sigmoid, they keep every pixel at sigmoid(0) = 0.5 or above."""


def sigmoid_fed_non_negative(model: Any) -> bool:
    """Whether the model ends in a sigmoid whose input comes out of a never-negative activation (a ReLU, say).

    Read from the canonical layer list, so a separate ``Activation("sigmoid")`` after ``Conv2D(..., "relu")`` and a
    Sequential block that does the same read alike; a sigmoid after a linear layer merges into that layer and
    reads as no such thing."""
    try:
        signature = model_signature(model)
    except Exception:  # an unreadable model has no structure to blame
        return False
    return (
        len(signature) >= 2
        and signature[-1].get("activation") == "sigmoid"
        and signature[-1].get("type") == "Activation"
        and signature[-2].get("activation") in NON_NEGATIVE
    )


def shape_before_flattening(encoder: Any) -> tuple[int, ...]:
    """The feature-map shape the encoder's Flatten layer receives, e.g. (14, 14, 64).

    The decoder mirrors the encoder, so it takes this shape from the encoder instead of a
    hand-typed constant that silently goes stale when the encoder changes. Flatten may sit inside
    a nested Sequential block.
    """
    for layer in flat_layers(encoder):
        if type(layer).__name__ == "Flatten":
            try:
                shape = layer.input.shape
            except (AttributeError, ValueError):
                shape = (layer.get_build_config() or {}).get("input_shape")
            if shape is not None:
                return tuple(int(d) for d in shape[1:])
    raise ValueError(
        f"{getattr(encoder, 'name', 'the encoder')!r} has no Flatten layer, so there is no shape "
        "before flattening to mirror."
    )


# --- the VAE's wiring, read from its serialised functional graph (model.get_config()) ---------------


def _sources(node: Any) -> list[tuple[str, int]]:
    """(layer name, output index) of every tensor an inbound node reads, in argument order."""
    if isinstance(node, dict):
        history = (
            node.get("config", {}).get("keras_history")
            if node.get("class_name") == "__keras_tensor__"
            else None
        )
        if history:
            return [(str(history[0]), int(history[2]))]
        return [found for value in node.values() for found in _sources(value)]
    if isinstance(node, list):
        return [found for value in node for found in _sources(value)]
    return []


def _entries(value: Any) -> list[list[Any]]:
    """Keras writes one input or output as ``[name, node, index]`` and several as a list of those."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [value]
    return (
        [entry for entry in value if isinstance(entry, list) and entry]
        if isinstance(value, list)
        else []
    )


def wiring_problem(config: dict[str, Any], encoder: str, decoder: str) -> str | None:
    """What is wrong with a VAE's functional graph (``model.get_config()``), or None if it is wired as asked."""
    layers_by_class: dict[str, list[dict]] = {}
    for layer in config.get("layers", []):
        layers_by_class.setdefault(str(layer.get("class_name")), []).append(layer)
    by_name = {str(layer.get("name")): layer for layer in config.get("layers", [])}
    inputs = [str(entry[0]) for entry in _entries(config.get("input_layers", []))]
    if len(inputs) != 1:
        return f"the VAE should have one input, the image; it has {len(inputs)}"
    for kind in ("Sampling", "CustomVariationalLayer"):
        if len(layers_by_class.get(kind, [])) != 1:
            return f"the VAE should contain one {kind} layer; its layers are {[l.get('class_name') for l in config.get('layers', [])]}"
    if encoder not in by_name or decoder not in by_name:
        return "build_vae should use the encoder and decoder it is given (call them on the input), not build new ones"
    sampling, loss = layers_by_class["Sampling"][0], layers_by_class["CustomVariationalLayer"][0]
    reads = {name: _sources(by_name[name].get("inbound_nodes", [])) for name in (encoder, decoder)}
    if reads[encoder] != [(inputs[0], 0)]:
        return "the encoder should be called on the VAE's image input"
    if _sources(sampling.get("inbound_nodes", [])) != [(encoder, 0), (encoder, 1)]:
        return "the Sampling layer should receive [z_mean, z_log_var], the encoder's two outputs, in that order"
    if reads[decoder] != [(str(sampling.get("name")), 0)]:
        return "the decoder should be called on the sampled z"
    if _sources(loss.get("inbound_nodes", [])) != [
        (inputs[0], 0),
        (decoder, 0),
        (encoder, 0),
        (encoder, 1),
    ]:
        return "CustomVariationalLayer should receive [image, z_decoded, z_mean, z_log_var], in that order"
    outputs = [str(entry[0]) for entry in _entries(config.get("output_layers", []))]
    if outputs != [str(loss.get("name"))]:
        return "the VAE's output should be the loss layer's output"
    return None
