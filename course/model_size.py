"""The size of a model from its ``config.json`` alone, before Keras builds anything.

Parameters, the largest layer output and floating-point operations per image (:func:`model_cost`):
every layer is made from its config (un-built, so it holds no weights) and asked for its output shape;
parameters and operations come from each class's own formula. A model far larger or slower than the
course's is refused here (``course.model_file`` calls this before ``keras.saving.load_model``), so a
config that declares hundreds of millions of parameters never allocates them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any


from course.untrusted import first_line, too_large


# --- the model file: its size from the config alone -------------------------------------------------

MAX_MODEL_PARAMETERS = 20_000_000
"""Parameters a model may declare, counted from its config before anything is built (:func:`model_cost`).
Measured: the course's encoder has 494,244 and its decoder 56,385 (the VAE 550,629); the encoder without its
stride 2, a plausible mistake, 1,698,468; 20 M is ~36x the VAE. A config declaring 200 M parameters made the
old loader build 5.3 GB of weights before this was checked."""
MAX_ACTIVATION_VALUES = 2_000_000
"""Values one layer may output per image, from the config (:func:`model_cost`). Measured: the largest in the
course's models, the first convolution's 28 x 28 x 32 = 25,088 (80x margin): a model that upsamples to huge
feature maps could otherwise exhaust the memory of whoever runs it."""
MAX_FLOPS_PER_IMAGE = 1_000_000_000
"""Operations (a multiply-add counts 2) one image may cost through the model, estimated from the config
(:func:`model_cost`), narrow layers and layers without weights weighted (``MIN_CHANNEL_PAIRS``,
``ELEMENTWISE_WEIGHT``, ``SOFTMAX_WEIGHT``, ``UPSAMPLING_WEIGHT``). Measured: the master's encoder 38,987,008,
decoder 9,332,736 (48,319,744 together); encoders with plausible mistakes, counted before layers without
weights were weighted (Flatten and Reshape add under 2 M): without the stride 2, 148,270,336; 5 x 5 kernels,
102,434,560; 5 x 5 kernels and 128 filters, 364,177,664. 10^9 is 20x the master's encoder and decoder. This machine (2 shared cores) runs weighted operations at 38 GFLOP/s or faster, whatever the layer
(the course's convolutions at 32 to 132), so a model at the cap costs at most ~26 ms an image: a verdict's
few hundred images take seconds, not the 370 s one legal-size model of 27 x 27 convolutions took."""
MIN_CHANNEL_PAIRS = 32
"""Convolutions and poolings are counted as if each window combined at least this many (input, output)
channel pairs. Measured on this machine: a 1-channel 101 x 101 convolution runs at 1.2 GFLOP/s (1.35 s an
image on a 280 x 280 map, a legal 10 k-parameter decoder), 1-channel 15 x 15 and 51 x 51 ones at 13 and 4.5,
a 1-channel 51 x 51 average pooling at 2.3, while 8 x 8 channels run at 58 and the course's 32 to 64 channels
at 79 to 132 GFLOP/s. Weighted, no layer measured runs below 38 GFLOP/s; the course's layers all combine 32
pairs or more, so their count is unchanged."""
ELEMENTWISE_WEIGHT = 64
"""Operations counted per value a layer without weights reads or writes (activations, reshapes, padding,
merges). Measured on this machine, one 1000 x 1000 image: ReLU 1.15, sigmoid 1.48, GELU 1.73, ELU 1.44 ns
per value; at the 38 GFLOP/s the operations cap assumes, 1 ns is 38 operations, so 64 per value read or
written (128 per value through) covers 3 ns. A course model's activations add under 10 M operations."""
SOFTMAX_WEIGHT = 192
"""Operations counted per value of a Softmax layer: 1.0 ns (last axis) to 2.0 ns (axis 1) measured on one
1000 x 1000 image, 3.5 ns in a stack of 100 (the red team's); 192 covers 5 ns."""
UPSAMPLING_WEIGHT = 384
"""Operations counted per output value of UpSampling: nearest 7.1, bilinear 4.8 ns per value measured
(upsampling 125 x 125 x 8 eightfold); 384 covers 10 ns. Other interpolations (bicubic 8.4 ns, lanczos5 about
19 ns) are refused."""
MAX_LAYER_CALLS = 512
"""Layers (counted once per call in the graph, nested models expanded, inputs not counted) a model may have.
Measured: 4 (the master's decoder) to 14 (the master's VAE with its encoder and decoder inside); the correct
variant written with activation layers, 13; ~35x margin."""
MAX_MODEL_NESTING = 8
"""Models inside models. Measured: 1 in the master's VAE (encoder and decoder inside it), 1 in the correct
variants built of ``Sequential`` blocks."""
MAX_TENSOR_RANK = 8
"""Most axes of any tensor in a model (the course's: 4, images with their batch axis)."""
UNKNOWN_DIM_BOUND = 28
"""Size assumed for an axis a model leaves open (``keras.Input(shape=(None, None, 1))``): the largest extent
of any axis of what the grader feeds a model (28 x 28 x 1 images, latent codes of 2 or 3 values)."""
_COURSE_SIZES = "the course's encoder has 494,244 and its decoder 56,385"


@dataclass
class ModelCost:
    """What a model costs, from its config alone (:func:`model_cost`)."""

    parameters: int = 0
    flops_per_image: int = 0
    widest_values: int = 0
    """Values per image of the largest output of any layer."""
    widest_layer: str = ""
    layer_calls: int = 0


Shape = tuple[int | None, ...]


def _refuse(message: str) -> ValueError:
    return ValueError(message)


def _as_shape(value: Any, where: str) -> Shape:
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_TENSOR_RANK:
        raise _refuse(f"{where} has no readable shape")
    dims: list[int | None] = []
    for dim in value:
        if dim is None:
            dims.append(None)
        elif isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0:
            dims.append(dim)
        else:
            raise _refuse(f"{where} has no readable shape")
    return tuple(dims)


def _merge(declared: Shape | None, given: Shape | None, where: str) -> Shape | None:
    """One shape from what a model declares and what it receives; a known size in both must agree."""
    if declared is None or given is None:
        return given if declared is None else declared
    if len(declared) != len(given):
        raise _refuse(
            f"{where} is declared for rank {len(declared)} but receives rank {len(given)}"
        )
    dims: list[int | None] = [given[0]]
    for a, b in zip(declared[1:], given[1:]):
        if a is not None and b is not None and a != b:
            raise _refuse(
                f"{where} is declared for inputs {_fmt(declared)} but receives {_fmt(given)}"
            )
        dims.append(b if a is None else a)
    return tuple(dims)


def _bounded(shape: Shape) -> Shape:
    return (shape[0], *(UNKNOWN_DIM_BOUND if d is None else d for d in shape[1:]))


def _fmt(shape: Shape) -> str:
    parts = ["None" if d is None else str(d) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _values(shape: Shape) -> int:
    """Values per image (every axis but the batch axis)."""
    return math.prod(UNKNOWN_DIM_BOUND if d is None else d for d in shape[1:])


def _known(dim: int | None, what: str) -> int:
    if dim is None:
        raise _refuse(f"{what} is unknown, so the layer cannot be sized")
    return dim


@dataclass(frozen=True)
class _Rule:
    """How one standard layer class is sized: parameters, operations per image, and whether it takes a list."""

    parameters: Callable[[Any, Shape], int]
    flops: Callable[[Any, Shape, Shape], int]
    takes_list: bool = False


def _channels(layer: Any, shape: Shape) -> tuple[int, Shape]:
    last = getattr(layer, "data_format", "channels_last") != "channels_first"
    channels = shape[-1] if last else shape[1]
    spatial = shape[1:-1] if last else shape[2:]
    return _known(channels, f"the channel axis of {layer.name}'s input"), spatial


def _spatial(layer: Any, shape: Shape) -> Shape:
    last = getattr(layer, "data_format", "channels_last") != "channels_first"
    return shape[1:-1] if last else shape[2:]


def _pixels(spatial: Shape) -> int:
    return math.prod(UNKNOWN_DIM_BOUND if d is None else d for d in spatial)


def _kernel(layer: Any) -> int:
    return math.prod(int(k) for k in layer.kernel_size)


def _conv_parameters(layer: Any, shape: Shape) -> int:
    channels, _ = _channels(layer, shape)
    groups = max(int(getattr(layer, "groups", 1) or 1), 1)
    return _kernel(layer) * (channels // groups) * layer.filters + layer.filters * bool(
        layer.use_bias
    )


def _narrow(operations: int, pairs: int) -> int:
    """Operations of a layer that combines ``pairs`` (input, output) channel pairs per window, weighted up to
    ``MIN_CHANNEL_PAIRS``: narrow convolutions and poolings run far below the machine's rate."""
    return (
        operations
        if pairs >= MIN_CHANNEL_PAIRS
        else operations * MIN_CHANNEL_PAIRS // max(pairs, 1)
    )


def _conv_flops(layer: Any, shape: Shape, out: Shape) -> int:
    channels, _ = _channels(layer, shape)
    spatial = _spatial(layer, out)
    groups = max(int(getattr(layer, "groups", 1) or 1), 1)
    pairs = (channels // groups) * layer.filters
    return _narrow(2 * _kernel(layer) * pairs * _pixels(spatial), pairs)


def _transpose_parameters(layer: Any, shape: Shape) -> int:
    channels, _ = _channels(layer, shape)
    return _kernel(layer) * channels * layer.filters + layer.filters * bool(layer.use_bias)


def _transpose_flops(layer: Any, shape: Shape, out: Shape) -> int:
    channels, spatial = _channels(layer, shape)
    pairs = channels * layer.filters
    return _narrow(2 * _kernel(layer) * pairs * _pixels(spatial), pairs)


def _depthwise_parameters(layer: Any, shape: Shape) -> int:
    channels, _ = _channels(layer, shape)
    width = channels * layer.depth_multiplier
    return _kernel(layer) * width + width * bool(layer.use_bias)


def _separable_parameters(layer: Any, shape: Shape) -> int:
    channels, _ = _channels(layer, shape)
    width = channels * layer.depth_multiplier
    return _kernel(layer) * width + width * layer.filters + layer.filters * bool(layer.use_bias)


def _separable_flops(layer: Any, shape: Shape, out: Shape) -> int:
    channels, _ = _channels(layer, shape)
    pixels = _pixels(_spatial(layer, out))
    width = channels * layer.depth_multiplier
    depthwise = _narrow(2 * _kernel(layer) * width * pixels, width)
    return depthwise + _narrow(2 * width * layer.filters * pixels, width * layer.filters)


def _dense_parameters(layer: Any, shape: Shape) -> int:
    inputs = _known(shape[-1], f"the last axis of {layer.name}'s input")
    return inputs * layer.units + layer.units * bool(layer.use_bias)


def _dense_flops(layer: Any, shape: Shape, out: Shape) -> int:
    inputs = _known(shape[-1], f"the last axis of {layer.name}'s input")
    return 2 * inputs * layer.units * _pixels(shape[1:-1])


def _axes(axis: Any, rank: int) -> list[int]:
    axes = [axis] if isinstance(axis, int) else list(axis)
    return [a if a >= 0 else a + rank for a in axes]


def _batch_norm_parameters(layer: Any, shape: Shape) -> int:
    width = math.prod(
        _known(shape[a], f"the normalised axis of {layer.name}'s input")
        for a in _axes(layer.axis, len(shape))
    )
    per_channel = (
        2 + bool(layer.scale) + bool(layer.center) + 3 * bool(getattr(layer, "renorm", False))
    )
    return width * per_channel


def _layer_norm_parameters(layer: Any, shape: Shape) -> int:
    width = math.prod(
        _known(shape[a], f"the normalised axis of {layer.name}'s input")
        for a in _axes(layer.axis, len(shape))
    )
    rms = bool(getattr(layer, "rms_scaling", False))
    return width * (bool(layer.scale or rms) + bool(layer.center and not rms))


def _prelu_parameters(layer: Any, shape: Shape) -> int:
    dims = list(shape[1:])
    for axis in layer.shared_axes or ():
        dims[axis - 1] = 1
    return math.prod(_known(d, f"an axis of {layer.name}'s input") for d in dims)


def _no_parameters(layer: Any, shape: Any) -> int:
    return 0


def _elementwise_flops(layer: Any, shape: Any, out: Shape) -> int:
    inputs = shape if isinstance(shape, list) else [shape]
    return ELEMENTWISE_WEIGHT * (sum(_values(s) for s in inputs) + _values(out))


def _softmax_flops(layer: Any, shape: Any, out: Shape) -> int:
    return SOFTMAX_WEIGHT * _values(out)


def _upsampling_flops(layer: Any, shape: Shape, out: Shape) -> int:
    interpolation = str(getattr(layer, "interpolation", "nearest"))
    if interpolation not in ("nearest", "bilinear"):
        raise _refuse(
            f"layer {layer.name} upsamples with {interpolation!r} interpolation, which the grader cannot "
            "run in bounded time; use 'nearest' (the default) or 'bilinear'"
        )
    return UPSAMPLING_WEIGHT * _values(out)


def _refuse_groups(rule: _Rule) -> _Rule:
    """``rule``, for convolutions with ``groups=1`` only: TensorFlow has no fast grouped convolution on
    the CPU (measured: 0.59 GFLOP/s for a 64-group 15 x 15 one), and no course model uses groups."""

    def flops(layer: Any, shape: Shape, out: Shape) -> int:
        groups = int(getattr(layer, "groups", 1) or 1)
        if groups != 1:
            raise _refuse(
                f"layer {layer.name} is a grouped convolution (groups={groups}), which the grader cannot "
                "run in bounded time; the course's models use groups=1"
            )
        return rule.flops(layer, shape, out)

    return _Rule(rule.parameters, flops, rule.takes_list)


def _pooling_flops(layer: Any, shape: Shape, out: Shape) -> int:
    channels, _ = _channels(layer, shape)
    return _narrow(math.prod(int(k) for k in layer.pool_size) * _values(out), channels)


def _normalisation_flops(layer: Any, shape: Shape, out: Shape) -> int:
    return 8 * _values(shape)


def _rules() -> dict[type, _Rule]:
    """The standard layers a model may use, each with what sizes it. Anything else is refused: a correct
    VAE needs Conv2D, Conv2DTranspose, Dense, Flatten, Reshape and activations; the rest are close cousins a
    careful student might reach for."""
    from keras import layers

    conv = _refuse_groups(_Rule(_conv_parameters, _conv_flops))
    transpose = _Rule(_transpose_parameters, _transpose_flops)
    elementwise = _Rule(_no_parameters, _elementwise_flops)
    merge = _Rule(_no_parameters, _elementwise_flops, takes_list=True)
    pooling = _Rule(_no_parameters, _pooling_flops)
    rules: dict[type, _Rule] = {
        layers.Dense: _Rule(_dense_parameters, _dense_flops),
        layers.Conv1D: conv,
        layers.Conv2D: conv,
        layers.Conv3D: conv,
        layers.Conv1DTranspose: transpose,
        layers.Conv2DTranspose: transpose,
        layers.Conv3DTranspose: transpose,
        layers.DepthwiseConv2D: _Rule(_depthwise_parameters, _depthwise_flops),
        layers.SeparableConv2D: _Rule(_separable_parameters, _separable_flops),
        layers.BatchNormalization: _Rule(_batch_norm_parameters, _normalisation_flops),
        layers.LayerNormalization: _Rule(_layer_norm_parameters, _normalisation_flops),
        layers.PReLU: _Rule(_prelu_parameters, _elementwise_flops),
    }
    for name in (
        "Flatten", "Reshape", "Permute", "RepeatVector", "Activation", "ReLU", "LeakyReLU", "ELU",
        "Softmax", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
        "GaussianDropout", "AlphaDropout", "Identity", "UpSampling1D", "UpSampling2D", "UpSampling3D",
        "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
        "GlobalMaxPooling2D", "GlobalMaxPooling3D", "Rescaling",
    ):  # fmt: skip
        rules[getattr(layers, name)] = elementwise
    for name in (
        "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
        "AveragePooling3D",
    ):  # fmt: skip
        rules[getattr(layers, name)] = pooling
    for name in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"):
        rules[getattr(layers, name)] = merge
    rules[layers.Softmax] = _Rule(_no_parameters, _softmax_flops)
    for name in ("UpSampling1D", "UpSampling2D", "UpSampling3D"):
        rules[getattr(layers, name)] = _Rule(_no_parameters, _upsampling_flops)
    return rules


def _depthwise_flops(layer: Any, shape: Shape, out: Shape) -> int:
    channels, _ = _channels(layer, shape)
    width = channels * layer.depth_multiplier
    return _narrow(2 * _kernel(layer) * width * _pixels(_spatial(layer, out)), width)


_RULES: dict[type, _Rule] | None = None
_MODEL_CLASSES = ("Functional", "Sequential", "Model")
_KERAS_TENSOR = "__keras_tensor__"


def _trusted_classes(custom_objects: Mapping[str, Any] | None) -> dict[str, Any]:
    """Classes the caller vouches for: ``custom_objects`` and those of an active ``keras.saving.CustomObjectScope``
    (the grader's own stand-ins for the notebook's layers). Classes registered globally (in a student's
    kernel, the notebook's own) are not among them."""
    trusted: dict[str, Any] = {}
    try:
        from keras.src.backend.common import global_state

        trusted.update(global_state.get_global_attribute("custom_objects_scope_dict", {}) or {})
    except Exception:  # another Keras layout: only the explicit argument is trusted
        pass
    trusted.update(custom_objects or {})
    return trusted


class _Sizer:
    """Walks a model's config (nested models included) and adds up what it costs, refusing what it cannot size."""

    def __init__(self, trusted: Mapping[str, Any]) -> None:
        global _RULES
        if _RULES is None:
            _RULES = _rules()
        self.rules = _RULES
        self.trusted = dict(trusted)
        self.trusted_types = {v for v in self.trusted.values() if isinstance(v, type)}
        self.cost = ModelCost()
        self.counted: set[int] = set()

    # -- models --------------------------------------------------------------------------------------

    def call(self, entry: Any, argument: Any, depth: int) -> list[Shape]:
        """Output shapes of one layer or model entry of a config, called on ``argument`` (a shape, a list of
        shapes, or None for a model on its own declared inputs)."""
        if not isinstance(entry, dict):
            raise _refuse("the model's config is not a Keras model config")
        kind = entry.get("class_name")
        if kind in _MODEL_CLASSES and _keras_module(entry.get("module")):
            if depth >= MAX_MODEL_NESTING:
                raise too_large(
                    f"{MAX_MODEL_NESTING} models nested inside each other", "the model nests more"
                )
            inputs = (
                None if argument is None else argument if isinstance(argument, list) else [argument]
            )
            if kind == "Sequential":
                return self.sequential(entry, inputs, depth + 1)
            return self.functional(entry, inputs, depth + 1)
        if argument is None:
            raise _refuse("the file does not hold a Keras model (keras.Model or keras.Sequential)")
        return self.leaf(entry, argument)

    def functional(self, entry: dict, inputs: list[Shape] | None, depth: int) -> list[Shape]:
        config = entry.get("config")
        layers = config.get("layers") if isinstance(config, dict) else None
        if not isinstance(layers, list):
            raise _refuse("the model's config has no list of layers")
        name_of = _name(entry)
        by_name: dict[str, dict] = {}
        for layer in layers:
            layer_name = _name(layer)
            if layer_name in by_name:
                raise _refuse(f"the model {name_of} has two layers named {layer_name[:60]!r}")
            by_name[layer_name] = layer
        sources = _references(config.get("input_layers"), f"the inputs of {name_of}")
        if inputs is not None and len(inputs) != len(sources):
            raise _refuse(
                f"the model {name_of} takes {len(sources)} inputs but is given {len(inputs)}"
            )
        produced: dict[tuple[str, int], list[Shape]] = {}
        for index, (source, _, _) in enumerate(sources):
            layer = by_name.get(source)
            if layer is None or layer.get("class_name") != "InputLayer":
                raise _refuse(
                    f"the model {name_of} names an input {source[:60]!r} it does not have"
                )
            declared = _input_shape(layer)
            shape = _merge(
                declared, None if inputs is None else inputs[index], f"the model {name_of}"
            )
            produced[(source, 0)] = [_bounded(shape) if inputs is None else shape]  # type: ignore[arg-type]
        pending: list[tuple[str, int, Any]] = []
        called: set[tuple[str, int]] = set()
        for layer_name, layer in by_name.items():
            nodes = layer.get("inbound_nodes", [])
            if not isinstance(nodes, list):
                raise _refuse(f"layer {layer_name[:60]} has no readable list of calls")
            if layer.get("class_name") == "InputLayer":
                if nodes:
                    raise _refuse(f"input layer {layer_name[:60]} is called on something")
                produced.setdefault((layer_name, 0), [_bounded(_input_shape(layer))])
                continue
            pending += [(layer_name, k, node) for k, node in enumerate(nodes)]
        while pending:
            waiting = []
            for layer_name, k, node in pending:
                if k and (layer_name, k - 1) not in called:
                    waiting.append((layer_name, k, node))
                    continue
                shapes = _resolve(_node_argument(node, layer_name), produced)
                if shapes is _NOT_YET:
                    waiting.append((layer_name, k, node))
                    continue
                made = self.call(by_name[layer_name], shapes, depth)
                called.add((layer_name, k))
                produced.setdefault((layer_name, k), made)
                if by_name[layer_name].get("class_name") == "Functional":
                    # Keras numbers a nested functional model's calls inconsistently (its node 0 is
                    # its own construction, "Functional models start out with a built-in node" in
                    # keras.src.models.functional, yet a call's arguments may name the first call 0
                    # and the outputs name it 1). Every call of it makes the same shapes, so both
                    # numbers name them.
                    produced.setdefault((layer_name, k + 1), made)
            if len(waiting) == len(pending):
                raise _refuse(
                    f"the model {name_of}'s graph calls layer {waiting[0][0][:60]} on tensors it never makes"
                )
            pending = waiting
        outputs = []
        for source, node, index in _references(
            config.get("output_layers"), f"the outputs of {name_of}"
        ):
            made = produced.get((source, node))
            if made is None or index >= len(made):
                raise _refuse(f"the model {name_of} names an output it does not make")
            outputs.append(made[index])
        return outputs

    def sequential(self, entry: dict, inputs: list[Shape] | None, depth: int) -> list[Shape]:
        config = entry.get("config")
        layers = config.get("layers") if isinstance(config, dict) else None
        if not isinstance(layers, list):
            raise _refuse("the model's config has no list of layers")
        name_of = _name(entry)
        declared: Shape | None = None
        if layers and isinstance(layers[0], dict) and layers[0].get("class_name") == "InputLayer":
            declared, layers = _input_shape(layers[0]), layers[1:]
        elif config.get("build_input_shape") is not None:
            declared = _as_shape(config["build_input_shape"], f"the model {name_of}'s input")
        elif isinstance(entry.get("build_config"), dict) and entry["build_config"].get(
            "input_shape"
        ):
            declared = _as_shape(
                entry["build_config"]["input_shape"], f"the model {name_of}'s input"
            )
        if inputs is not None and len(inputs) != 1:
            raise _refuse(f"the Sequential model {name_of} is given {len(inputs)} inputs")
        shape = _merge(declared, None if inputs is None else inputs[0], f"the model {name_of}")
        if shape is None:
            raise _refuse(
                f"the model {name_of} has no input shape: start it with keras.Input(shape=...)"
            )
        if inputs is None:
            shape = _bounded(shape)
        for layer in layers:
            outputs = self.call(layer, shape, depth)
            if len(outputs) != 1:
                raise _refuse(
                    f"a layer of the Sequential model {name_of} has {len(outputs)} outputs"
                )
            shape = outputs[0]
        return [shape]

    # -- layers --------------------------------------------------------------------------------------

    def leaf(self, entry: dict, shapes: Any) -> list[Shape]:
        import keras

        name = _name(entry)
        self.cost.layer_calls += 1
        if self.cost.layer_calls > MAX_LAYER_CALLS:
            raise too_large(f"{MAX_LAYER_CALLS} layers", "the model has more")
        kind = entry.get("class_name")
        registered = entry.get("registered_name")
        trusted = self.trusted and (registered in self.trusted or kind in self.trusted)
        if kind == "InputLayer" or not (
            trusted or (_keras_module(entry.get("module")) and isinstance(kind, str))
        ):
            raise _unknown(name, kind)
        clean = {
            k: entry[k] for k in ("module", "class_name", "config", "registered_name") if k in entry
        }
        try:
            layer = keras.saving.deserialize_keras_object(
                clean, custom_objects=self.trusted or None, safe_mode=True
            )
        except Exception as exc:
            if kind in {rule.__name__ for rule in self.rules}:
                raise _refuse(
                    f"layer {name} (a {kind}) cannot be made from its config ({first_line(exc)})"
                ) from None
            raise _unknown(name, kind) from None
        first_call = id(entry) not in self.counted
        self.counted.add(id(entry))
        if type(layer) in self.trusted_types and trusted:
            inputs = shapes if isinstance(shapes, list) else [shapes]
            out = inputs[0]
            self._add(name, 0, sum(_values(s) for s in inputs), [out])
            return [out]
        rule = self.rules.get(type(layer))
        if rule is None:
            raise _unknown(name, kind)
        if getattr(layer, "lora_rank", None) or getattr(layer, "quantization_mode", None):
            raise _refuse(
                f"layer {name} is quantized or adapted (LoRA); the course's models use plain layers"
            )
        if rule.takes_list != isinstance(shapes, list):
            raise _refuse(
                f"layer {name} is called on {'one tensor' if rule.takes_list else 'a list'}"
            )
        try:
            result = layer.compute_output_shape(shapes)
        except Exception as exc:
            raise _refuse(
                f"layer {name} cannot take inputs of shape {shapes} ({first_line(exc)})"
            ) from None
        out = _as_shape(list(result), f"layer {name}'s output")
        parameters = 0
        if first_call and not rule.takes_list:
            parameters = rule.parameters(layer, shapes)
            built = entry.get("build_config")
            if isinstance(built, dict) and built.get("input_shape") is not None:
                # Keras builds a layer from its build_config as soon as it is made, before the graph calls it.
                alternative = _as_shape(built["input_shape"], f"layer {name}'s build shape")
                if len(alternative) != len(shapes):
                    raise _refuse(
                        f"layer {name} is built for rank {len(alternative)} but receives rank {len(shapes)}"
                    )
                filled = tuple(g if b is None else b for b, g in zip(alternative, shapes))
                parameters = max(parameters, rule.parameters(layer, filled))
        flops = rule.flops(layer, shapes, out)
        self._add(name, parameters, flops, [out])
        return [out]

    def _add(self, name: str, parameters: int, flops: int, outputs: list[Shape]) -> None:
        cost = self.cost
        cost.parameters += parameters
        cost.flops_per_image += flops
        for shape in outputs:
            values = _values(shape)
            if values > cost.widest_values:
                cost.widest_values, cost.widest_layer = values, name
        if cost.parameters > MAX_MODEL_PARAMETERS:
            raise too_large(
                f"{MAX_MODEL_PARAMETERS:,} parameters",
                f"the model you built declares at least {cost.parameters:,} (layer {name} alone "
                f"{parameters:,}); {_COURSE_SIZES}",
            )
        if cost.widest_values > MAX_ACTIVATION_VALUES:
            raise too_large(
                f"{MAX_ACTIVATION_VALUES:,} values per image from one layer",
                f"layer {name} outputs {cost.widest_values:,}; the course's largest layer outputs 25,088",
            )
        if cost.flops_per_image > MAX_FLOPS_PER_IMAGE:
            raise too_large(
                f"{MAX_FLOPS_PER_IMAGE:,} operations per image",
                f"the model you built needs at least {cost.flops_per_image:,} (layer {name} alone "
                f"{flops:,}, narrow layers weighted for how slowly they run); the course's VAE needs "
                "about 45,000,000",
            )


_NOT_YET = object()


def _keras_module(module: Any) -> bool:
    return isinstance(module, str) and (module == "keras" or module.startswith("keras."))


def _name(entry: Any) -> str:
    if not isinstance(entry, dict):
        raise _refuse("the model's config is not a Keras model config")
    name = entry.get("name")
    if name is None and isinstance(entry.get("config"), dict):
        name = entry["config"].get("name")
    if not isinstance(name, str):
        raise _refuse("a layer of the model has no name")
    return name[:60]


def _unknown(name: str, kind: Any) -> ValueError:
    shown = str(kind)[:60]
    return _refuse(
        f"layer {name} is a {shown}, which the grader cannot size before loading it; build the model from "
        "standard Keras layers (Conv2D, Conv2DTranspose, Dense, Flatten, Reshape, activations)"
    )


def _input_shape(layer: dict) -> Shape:
    config = layer.get("config")
    if not isinstance(config, dict):
        raise _refuse(f"input layer {_name(layer)} has no config")
    shape = config.get("batch_shape", config.get("batch_input_shape"))
    if shape is None and config.get("shape") is not None:
        shape = (
            [config.get("batch_size"), *config["shape"]]
            if isinstance(config["shape"], list)
            else None
        )
    return _as_shape(shape, f"input layer {_name(layer)}")


def _references(value: Any, where: str) -> list[tuple[str, int, int]]:
    """``input_layers`` / ``output_layers`` of a functional config: one [name, node, index] or a list of them."""
    if _is_reference(value):
        return [(value[0], value[1], value[2])]
    if isinstance(value, list) and value and all(_is_reference(v) for v in value):
        return [(v[0], v[1], v[2]) for v in value]
    raise _refuse(f"{where} are not readable")


def _is_reference(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value[1:])
    )


def _node_argument(node: Any, layer_name: str) -> Any:
    """What a layer was called on: the first positional argument of a call (a tensor or a list of them).

    Tensors anywhere else in the call (a mask, a second positional tensor) are refused: no layer a course
    model uses takes them."""
    if not isinstance(node, dict) or not isinstance(node.get("args"), list) or not node["args"]:
        raise _refuse(f"layer {layer_name[:60]} is called in a way the grader cannot read")
    first, rest = node["args"][0], [node["args"][1:], node.get("kwargs", {})]
    if any(True for _ in _tensors(rest)):
        raise _refuse(f"layer {layer_name[:60]} is called with extra tensors")
    if isinstance(first, list):
        if not first or not all(_is_tensor(t) for t in first):
            raise _refuse(
                f"layer {layer_name[:60]} is called on something that is not a list of tensors"
            )
    elif not _is_tensor(first):
        raise _refuse(f"layer {layer_name[:60]} is called on something that is not a tensor")
    return first


def _is_tensor(value: Any) -> bool:
    if not (isinstance(value, dict) and value.get("class_name") == _KERAS_TENSOR):
        return False
    config = value.get("config")
    history = config.get("keras_history") if isinstance(config, dict) else None
    return _is_reference(history)


def _tensors(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == _KERAS_TENSOR:
                yield item
            else:
                stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _resolve(argument: Any, produced: Mapping[tuple[str, int], list[Shape]]) -> Any:
    """Shape (or list of shapes) of a call's argument, or ``_NOT_YET`` while a tensor it needs is not made."""
    tensors = argument if isinstance(argument, list) else [argument]
    shapes = []
    for tensor in tensors:
        name, node, index = tensor["config"]["keras_history"]
        made = produced.get((name, node))
        if made is None:
            return _NOT_YET
        if index >= len(made):
            raise _refuse(
                f"a layer is called on output {index} of {name[:60]}, which has {len(made)}"
            )
        shapes.append(made[index])
    return shapes if isinstance(argument, list) else shapes[0]


def model_cost(config: Any, custom_objects: Mapping[str, Any] | None = None) -> ModelCost:
    """Parameters, operations per image and the largest layer output of a model, from its config alone.

    Nothing is built: every layer is made from its config (un-built, so it holds no weights) and asked for
    its output shape; parameters and operations come from each class's own formula (:func:`_rules`), from
    the shape the graph feeds it and, where Keras would build it from its ``build_config`` first, from that
    shape too (the larger counts). Raises ``ValueError`` as soon as a cap is passed or a layer cannot be
    sized. Classes in ``custom_objects`` or an active ``keras.saving.CustomObjectScope`` are the caller's
    own: sized as weightless layers whose output is shaped like their first input.
    """
    sizer = _Sizer(_trusted_classes(custom_objects))
    sizer.call(config, None, 0)
    return sizer.cost
