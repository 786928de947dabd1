"""The demo class: sample submissions that ``make demo`` and the test suite grade, with their manifest.

Every submission is built from the release and the master (vae_samples.kit.filled), so the set
follows the master when it changes; a mistake whose text no longer matches the master raises at
once. Each has one plausible mistake in one graded part. The expected points ARE the manifest:
``lost`` names each graded cell that scores nothing and why, reasoned from the tests and checked
by grading (tests/test_pipeline.py asserts every cell exactly). Points per cell are read from the
master, never written here.

Render the manifest with ``python -m vae_grader.apps.demo --manifest > tests/vae_samples/demo_manifest.md``
(that file is its output, kept in sync by a test).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping

import nbformat

from vae_grader.cells import require_cell, solution_markers
from vae_grader.paths import MASTER
from vae_grader.submissions import PARTS, Submission, test_cells
from vae_samples.kit import NOT_ATTEMPTED, filled, full_points

_MASTER = nbformat.read(MASTER, as_version=4)


def _part_lost(part: str, visible: str, hidden: str | None = None) -> dict[str, str]:
    """Reasons for losing both test cells of ``part`` (``hidden`` defaults to ``visible``)."""
    visible_id, hidden_id = test_cells(part)
    return {visible_id: visible, hidden_id: hidden or visible}


def rewritten(cell: str, source: str) -> tuple[str, str]:
    """A substitution that replaces the whole solution of ``cell`` (the lines between the markers) by ``source``.

    For correct-but-different students, who write a part in their own way rather than slip once. The
    old text is the master's solution, so a changed master still raises instead of passing silently;
    ``source`` is dedented and indented like the master's solution lines.
    """
    markers = solution_markers()
    lines = require_cell(_MASTER, cell).source.splitlines()
    begin = next(i for i, line in enumerate(lines) if markers.begin in line)
    end = next(i for i, line in enumerate(lines) if markers.end in line)
    indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
    return "\n".join(lines[begin + 1 : end]), textwrap.indent(
        textwrap.dedent(source).strip("\n"), indent
    )


def _not_attempted(parts: Iterable[str]) -> dict[str, str]:
    return {cell: NOT_ATTEMPTED for part in parts for cell in test_cells(part)}


def sample(
    student: str,
    description: str,
    parts: Iterable[str] = PARTS,
    mistakes: Mapping[str, tuple[str, str]] | None = None,
    lost: Mapping[str, str] | None = None,
    feedback: tuple[str, ...] = (),
    partial: Mapping[str, tuple[float, str]] | None = None,
) -> Submission:
    """A submission whose expected points are full marks minus the cells in ``lost`` (0) and ``partial``
    (``grade_id -> (points kept, why the rest is lost)``)."""
    parts = tuple(parts)
    lost = {**_not_attempted(p for p in PARTS if p not in parts), **dict(lost or {})}
    unknown = set(lost) - {cell for part in PARTS for cell in test_cells(part)}
    if unknown:
        raise ValueError(f"{student}: unknown graded cells {sorted(unknown)}")
    return Submission(
        student=student,
        description=description,
        build=filled(parts, mistakes),
        expected=full_points(
            _MASTER,
            PARTS,
            minus=lost,
            partial={c: kept for c, (kept, _) in (partial or {}).items()},
        ),
        expected_feedback=feedback,
        lost=lost,
        partial={c: why for c, (_, why) in (partial or {}).items()},
    )


# When the model cannot be trained (a part before training is broken), both training tests fail.
_NOT_TRAINED = {
    "test_training": "no trained model: `vae` (or `history`) was never defined because an earlier cell failed",
    "test_training_hidden": "no trained model, so reconstructions do not resemble their inputs",
}

SUBMISSIONS: list[Submission] = [
    sample("complete", "every part filled in from the master solution"),
    sample("untouched", "the release exactly as handed out", parts=(), feedback=("not attempted",)),
    sample(
        "half_done",
        "encoder and sampling done, the rest not started",
        parts=("encoder", "sampling"),
        feedback=("not attempted",),
    ),
    # Training still works at the grading seed (reconstruction error ratio 0.67, threshold 0.90;
    # complete: 0.64), so only the sampler's hidden test is lost. That part depends on the seed:
    # at seeds 0-5 the ratio was 0.67 / 0.95 / 0.70 / 0.93 / 0.98 / 0.98 (VAE_SEED, grading budget
    # of course/budget.py at the time). Seeded grading is deterministic on one machine; re-check
    # this line when the grading budget or seed changes. The mistake itself is the point of the demo.
    sample(
        "sampler_exp_logvar",
        "the original sampler: exp(z_log_var) as the standard deviation instead of exp(0.5 * z_log_var)",
        mistakes={"sampling": ("ops.exp(0.5 * z_log_var)", "ops.exp(z_log_var)")},
        lost={
            "test_sampling": "the standard deviation of 4,000 draws at z_log_var = log 4 is 4, not 2",
            # Part 7 is not lost here any more: its training code is right, and at the random state
            # the kernel reaches its training cell with (the part-5 probe no longer reseeds the
            # kernel with seed 105) the short run's reconstructions pass (measured in the pipeline:
            # 5 of 5). Seed-dependent (0.67-0.98 over seeds 0-5 above), deterministic on one machine.
        },
        partial={
            "test_sampling_hidden": (
                1.5,
                "the statistics of 20,000 draws (2 points) and the gradient with respect "
                "to z_log_var (0.5) fail: exp(z_log_var) as the s.d. squares the variance; "
                "reproducibility and serialisation pass",
            )
        },
        feedback=("the variance of 20,000 draws", "the 0.5 is missing"),
    ),
    sample(
        "kl_sign_flipped",
        "the KL term added with the wrong sign (kl = mean(...) instead of -mean(...))",
        mistakes={"loss_layer": ("kl = -ops.mean(", "kl = ops.mean(")},
        lost={
            "test_loss_layer": "the loss for a non-zero code is below the reference: the KL term is subtracted",
            "test_training": "training diverges to NaN: with the KL term subtracted, growing exp(z_log_var) "
            "lowers the loss without bound",
            "test_training_hidden": "the diverged model reconstructs NaN",
            "test_manifold": "cross-part: the diverged decoder draws NaN pixels (the message says build_manifold "
            "is right and the NaN comes from the trained decoder)",
        },
        partial={
            "test_loss_layer_hidden": (
                1,
                "the loss value (3 points) is below the reconstruction term: the KL term is "
                "subtracted; the layer still passes x through (1 point)",
            )
        },
        feedback=("the KL term must be added with a positive sign", "training diverged"),
    ),
    # "Without its sigmoid": softmax in its place, the classifier habit. Softmax over one channel is
    # 1.0 everywhere, so nothing trains, whatever the training threshold. The literal variant (no
    # activation) was measured and left out as too close to call: the cross-entropy clips the linear
    # output and training half works (reconstruction error ratio 0.80 / 0.72 / 0.88 at seeds 0 / 1 / 2
    # while the threshold was being calibrated between 0.85 and 0.90; activation="relu" trains
    # identically, the clip kills the same gradients).
    sample(
        "decoder_no_sigmoid",
        "the decoder's last Conv2D with softmax instead of sigmoid (softmax over one channel is 1.0 everywhere)",
        mistakes={"decoder": ('activation="sigmoid")', 'activation="softmax")')},
        lost={
            "test_decoder": "every decoded pixel is 1.0 whatever the code: a softmax over one channel is always 1",
            "test_training": "nothing learns through a constant output: val_loss 14, far above 0.5",
            "test_training_hidden": "every reconstruction is the same blank image (error ratio 1.00)",
        },
        partial={
            "test_decoder_hidden": (
                1,
                "the layers (2 points): layer 4 has activation 'softmax', expected "
                "'sigmoid'; latent_dim and shape_before_flattening are used (1 point)",
            )
        },
        feedback=("expected activation='sigmoid'", "a softmax over one channel"),
    ),
    sample(
        "encoder_stride1",
        "the second encoder convolution with stride 1 instead of 2",
        mistakes={"encoder": ('activation="relu", strides=2)', 'activation="relu")')},
        lost={
            "test_encoder": "the feature map before Flatten is 28x28x64, not 14x14x64",
            "test_encoder_hidden": "layer 2 has strides (1, 1), expected (2, 2)",
            **_NOT_TRAINED,
            "test_manifold": "the decoder built from the 28x28 feature map makes 56x56 digits, so build_manifold fails "
            "and `manifold` is never defined",
        },
        feedback=("expected strides=(2, 2)",),
    ),
    sample(
        "data_unscaled",
        "pixels left in 0..255 (no division by 255)",
        mistakes={"data": ('(images.astype("float32") / 255.0)', 'images.astype("float32")')},
        lost={
            "test_data": "x_train ranges up to 255, expected [0, 1]",
            # Cross-entropy against 0..255 targets is negative (val_loss about -480): the visible
            # training check says so and points back at part 6.
            "test_training": "trained on 0..255 targets, the model reconstructs [0, 1] test digits worse than fresh "
            "weights (1.01 against 0.69): the self-check asks whether the images are scaled to [0, 1]",
            "test_training_hidden": "trained on 0..255 targets, reconstructions of [0, 1] test images are no "
            "closer to their own input than to other digits (error ratio 1.00)",
        },
        partial={
            "test_data_hidden": (
                1,
                "preprocess() (1 point) returns 255 for a white pixel, expected 1.0; x_train and x_test are "
                "MNIST in order, as preprocess() scales them (1 point)",
            )
        },
        feedback=("divide by 255", "trained on images scaled to [0, 1]"),
    ),
    sample(
        "manifold_linspace",
        "the manifold grid evenly spaced in z (linspace from -2 to 2) instead of through the inverse normal CDF",
        mistakes={
            "manifold": (
                "grid = norm.ppf(np.linspace(0.05, 0.95, n))",
                "grid = np.linspace(-2, 2, n)",
            )
        },
        lost={
            "test_manifold": "the probe decoder's tiles show codes evenly spaced from -2 to 2, not "
            "norm.ppf(linspace(0.05, 0.95, n))"
        },
        partial={
            "test_manifold_hidden": (
                1,
                "the grid and layout (2 points): the codes along the first row are not "
                "norm.ppf(linspace(0.05, 0.95, n)); one batched call and unscrambled tiles pass",
            )
        },
        feedback=("norm.ppf(np.linspace(0.05, 0.95, n))", "evenly spaced in z"),
    ),
    sample(
        "manifold_swapped",
        "the manifold with rows and columns swapped (z[1] changes along a row)",
        mistakes={
            "manifold": ("z0, z1 = np.meshgrid(grid, grid)", "z1, z0 = np.meshgrid(grid, grid)")
        },
        lost={
            "test_manifold": "the probe decoder shows the tiles transposed: z[0] changes down a column"
        },
        partial={
            "test_manifold_hidden": (
                1,
                "the grid and layout (2 points): z[0] and z[1] are swapped; one batched "
                "call and unscrambled tiles pass",
            )
        },
        feedback=("z[0] and z[1] are swapped", "the tiles are transposed"),
    ),
    sample(
        "loss_returns_reconstruction",
        "the loss layer returns the reconstruction instead of passing its input x through",
        mistakes={"loss_layer": ("return x", "return z_decoded")},
        lost={
            "test_loss_layer": "the layer's output is the reconstruction, not x",
        },
        partial={
            "test_loss_layer_hidden": (
                3,
                "the layer's output (1 point) is the reconstruction, not x; the loss "
                "value is right (3 points)",
            )
        },
        feedback=("not the reconstruction",),
    ),
]

# --- correct-but-different students (40/40 each) and more plausible mistakes ----------------

SEQUENTIAL_ENCODER = """
    convolutions = keras.Sequential([
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
    ], name="convolutions")
    head = keras.Sequential([layers.Flatten(), layers.Dense(32, activation="relu")], name="head")
    inputs = keras.Input(shape=(28, 28, 1))
    features = head(convolutions(inputs))
    outputs = [layers.Dense(latent_dim, name="z_mean")(features), layers.Dense(latent_dim, name="z_log_var")(features)]
    return keras.Model(inputs, outputs, name="encoder")
"""
SEQUENTIAL_DECODER = """
    inputs = keras.Input(shape=(latent_dim,))
    upsample = keras.Sequential([
        layers.Dense(int(np.prod(shape_before_flattening)), activation="relu"),
        layers.Reshape(shape_before_flattening),
        layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),
    ], name="upsample")
    to_pixels = keras.Sequential([layers.Conv2D(1, 3, padding="same", activation="sigmoid")], name="to_pixels")
    return keras.Model(inputs, to_pixels(upsample(inputs)), name="decoder")
"""
ACTIVATION_LAYER_ENCODER = """
    image = keras.Input(shape=(28, 28, 1))
    x = layers.ReLU()(layers.Conv2D(32, 3, padding="same", activation=None)(image))
    x = layers.ReLU()(layers.Conv2D(64, 3, strides=2, padding="same", activation=None)(x))
    x = layers.Activation("relu")(layers.Conv2D(64, 3, padding="same")(x))
    x = layers.ReLU()(layers.Conv2D(64, 3, padding="same")(x))
    x = layers.Flatten()(x)
    x = layers.Activation("relu")(layers.Dense(32)(x))
    return keras.Model(image, [layers.Dense(latent_dim)(x), layers.Dense(latent_dim)(x)], name="encoder")
"""
ACTIVATION_LAYER_DECODER = """
    z = keras.Input(shape=(latent_dim,))
    x = layers.ReLU()(layers.Dense(int(np.prod(shape_before_flattening)))(z))
    x = layers.Reshape(shape_before_flattening)(x)
    x = layers.ReLU()(layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation=None)(x))
    image = layers.Activation("sigmoid")(layers.Conv2D(1, 3, padding="same", activation=None)(x))
    return keras.Model(z, image, name="decoder")
"""
MANUAL_LOSS = """
    p = ops.clip(ops.reshape(z_decoded, (ops.shape(z_decoded)[0], -1)), 1e-7, 1 - 1e-7)
    target = ops.reshape(x, (ops.shape(x)[0], -1))
    reconstruction = ops.mean(-target * ops.log(p) - (1 - target) * ops.log(1 - p))
    latent_dim = ops.shape(z_mean)[-1]
    kl = -ops.sum(1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1) / latent_dim
    self.add_loss(reconstruction + KL_WEIGHT * ops.mean(kl))
    return x
"""
SQRT_SAMPLER = """
    epsilon = keras.random.normal(shape=ops.shape(z_log_var), mean=0.0, stddev=1.0, seed=self.seed_generator)
    return z_mean + ops.sqrt(ops.exp(z_log_var)) * epsilon
"""
LOOP_MANIFOLD = """
    grid = norm.ppf(np.linspace(0.05, 0.95, n))
    codes = []
    for i in range(n):  # row i: z[1] = grid[i]
        for j in range(n):  # column j: z[0] = grid[j]
            codes.append([grid[j], grid[i]])
    digits = ops.convert_to_numpy(decoder(np.array(codes, dtype="float32")))  # one call for all n*n codes
    image = np.zeros((n * digit_size, n * digit_size))
    for k, digit in enumerate(digits):
        i, j = divmod(k, n)
        image[i * digit_size:(i + 1) * digit_size, j * digit_size:(j + 1) * digit_size] = digit.reshape(digit_size, digit_size)
    return image
"""
VALID_PADDING_ENCODER = """
    image = keras.Input(shape=(28, 28, 1), name="image")
    x = layers.Conv2D(32, 3, activation="relu")(image)
    x = layers.Conv2D(64, 3, activation="relu", strides=2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(32, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    return keras.Model(image, [z_mean, z_log_var], name="encoder")
"""

FOUR_D_LOSS = """
    p = ops.clip(z_decoded, 1e-7, 1.0 - 1e-7)
    pixel_loss = -(x * ops.log(p) + (1.0 - x) * ops.log(1.0 - p))
    reconstruction = ops.mean(ops.mean(pixel_loss, axis=(1, 2, 3)))
    kl = ops.mean(ops.exp(z_log_var) + ops.square(z_mean) - 1.0 - z_log_var, axis=-1)
    self.add_loss(ops.add(reconstruction, ops.multiply(KL_WEIGHT, ops.mean(kl))))
    return x
"""
ASARRAY_PREPROCESS = """
    return np.asarray(images, "float32")[..., None] / 255.0
"""
INDEX_MANIFOLD = """
    grid = norm.ppf(np.linspace(0.05, 0.95, n))
    rows, cols = np.divmod(np.arange(n * n), n)  # code k sits in row k // n, column k % n
    codes = np.stack([grid[cols], grid[rows]], axis=1).astype("float32")
    digits = np.asarray(decoder.predict(codes, verbose=0)).reshape(n, n, digit_size, digit_size)
    return np.concatenate([np.concatenate(list(row), axis=1) for row in digits], axis=0)
"""
CUSTOM_LAYER_ENCODER = """
    class ConvBlock(layers.Layer):
        # Conv2D + ReLU as one layer of the student's own.

        def __init__(self, filters, strides=1, **kwargs):
            super().__init__(**kwargs)
            self.filters, self.strides = filters, strides
            self.conv = layers.Conv2D(filters, 3, strides=strides, padding="same", activation="relu")

        def call(self, inputs):
            return self.conv(inputs)

        def get_config(self):
            return {**super().get_config(), "filters": self.filters, "strides": self.strides}

    image = keras.Input(shape=(28, 28, 1), name="image")
    x = ConvBlock(32)(image)
    x = ConvBlock(64, strides=2)(x)
    x = ConvBlock(64)(x)
    x = ConvBlock(64)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(32, activation="relu")(x)
    return keras.Model(image, [layers.Dense(latent_dim)(x), layers.Dense(latent_dim)(x)], name="encoder")
"""

CORRECT_VARIANTS: list[Submission] = [
    sample(
        "sequential_blocks",
        "correct, written differently: encoder and decoder as keras.Sequential blocks wrapped in "
        "keras.Model(inputs, outputs)",
        mistakes={
            "encoder": rewritten("encoder", SEQUENTIAL_ENCODER),
            "decoder": rewritten("decoder", SEQUENTIAL_DECODER),
        },
    ),
    sample(
        "activation_layers",
        "correct, written differently: Conv2D/Dense with activation=None followed by "
        'layers.ReLU() / layers.Activation("relu") / layers.Activation("sigmoid")',
        mistakes={
            "encoder": rewritten("encoder", ACTIVATION_LAYER_ENCODER),
            "decoder": rewritten("decoder", ACTIVATION_LAYER_DECODER),
        },
    ),
    sample(
        "loss_by_hand",
        "correct, written differently: the cross-entropy written out as -x log p - (1 - x) log(1 - p) "
        "with clipping, the KL term as ops.sum(...) / latent_dim",
        mistakes={"loss_layer": rewritten("loss_layer", MANUAL_LOSS)},
    ),
    sample(
        "sampler_sqrt",
        "correct, written differently: the standard deviation as ops.sqrt(ops.exp(z_log_var)), the noise "
        "drawn with the shape of z_log_var",
        mistakes={"sampling": rewritten("sampling", SQRT_SAMPLER)},
    ),
    sample(
        "manifold_loop",
        "correct, written differently: codes and tiles in Python loops around one batched decoder call",
        mistakes={"manifold": rewritten("manifold", LOOP_MANIFOLD)},
    ),
    sample(
        "loss_4d_manual",
        "correct, written differently: the cross-entropy by hand on the 4-D tensors (clipped, mean over the "
        "pixel axes, then over the batch), the KL term as mean(exp(z_log_var) + z_mean^2 - 1 - z_log_var) and "
        "ops.add / ops.multiply",
        mistakes={"loss_layer": rewritten("loss_layer", FOUR_D_LOSS)},
    ),
    sample(
        "data_asarray_channel",
        'correct, written differently: np.asarray(images, "float32")[..., None] / 255.0',
        mistakes={"data": rewritten("data", ASARRAY_PREPROCESS)},
    ),
    sample(
        "manifold_divmod_concatenate",
        "correct, written differently: each code's row and column from np.divmod, one decoder.predict call, "
        "the tiles joined with np.concatenate row by row",
        mistakes={"manifold": rewritten("manifold", INDEX_MANIFOLD)},
    ),
]
"""Correct code written as a careful reader of the instructions might: each must earn 40/40."""

CATALOGUE: dict[str, dict[str, str]] = {
    "loss_sum_pixels": {
        "test_loss_layer": "expected 0.",
        "test_loss_layer_hidden": "summed over the 784 pixels",
    },
    "encoder_padding_valid": {
        "test_encoder": 'padding="same"',
        "test_encoder_hidden": "padding='valid'; expected padding='same'",
        "test_training_hidden": "fix part 1",
    },
    "sampler_shared_noise": {
        "test_sampling": "shared across the batch",
        "test_sampling_hidden": "shared across the batch",
    },
    "sampler_unseeded": {
        "test_sampling": "drew different noise",
        "test_sampling_hidden": "seed=self.seed_generator",
    },
    "manifold_tiles_transposed": {
        "test_manifold": "check the reshape/transpose",
        "test_manifold_hidden": "transposed inside itself",
    },
    "fit_without_validation": {
        "test_training": "no val_loss in the history",
    },
    "fit_validation_split": {
        "test_training_hidden": "look untrained",
    },
    "loss_from_logits": {
        "test_loss_layer": "from_logits=True",
        "test_loss_layer_hidden": "from_logits=True",
    },
    "data_div256": {
        "test_data": "divided by 256 instead of 255",
        "test_data_hidden": "divided by 256 instead of 255",
    },
    "manifold_nan_grid": {
        "test_manifold": "the grid's ends are infinite",
        "test_manifold_hidden": "the grid's ends are infinite",
    },
    "manifold_cdf_grid": {
        "test_manifold": "the grid is not norm.ppf(np.linspace(0.05, 0.95, n))",
        "test_manifold_hidden": "the grid is not norm.ppf(np.linspace(0.05, 0.95, n))",
    },
    "encoder_custom_layer": {
        "test_encoder": "no Lambda or custom layers",
        "test_encoder_hidden": "no Lambda or custom layers",
    },
    "encoder_dense_without_flatten": {
        "test_encoder": "not flattened before the Dense layers",
        "test_encoder_hidden": "expected type='Flatten'",
    },
    "decoder_relu_before_sigmoid": {
        "test_decoder": "what enters the sigmoid is never negative",
    },
    "loss_no_add_loss": {
        "test_loss_layer": "self.add_loss",
        "test_loss_layer_hidden": "exactly one loss should be added",
    },
    # Its message is asserted on the feedback page only (``feedback``): judged here on 64 training images, the
    # model is too little trained for the check to reach the validation data.
    "fit_validation_on_train": {},
}
"""For each new mistake: grade_id -> a phrase of the message that cell's failing check must show (the cause,
not a formula). tests/test_fair_grading.py asserts every entry in-process; the pipeline tests assert them on
the feedback pages."""

_PADDING_NOT_TRAINED = (
    "the decoder mirrors the encoder's (8, 8, 64) feature map and makes 16x16 images, so "
    "build_vae cannot match them with the 28x28 inputs and `vae` is never built"
)

NEW_MISTAKES: list[Submission] = [
    sample(
        "loss_sum_pixels",
        "the reconstruction term summed over each image's 784 pixels instead of averaged",
        mistakes={
            "loss_layer": (
                "ops.mean(keras.losses.binary_crossentropy(x_flat, decoded_flat))",
                "ops.mean(ops.sum(ops.binary_crossentropy(x_flat, decoded_flat), axis=-1))",
            )
        },
        lost={"test_loss_layer": "the loss for a zero code is 784 times the mean cross-entropy"},
        partial={
            "test_loss_layer_hidden": (
                1,
                "the loss value (3 points) is the per-image sum over 784 pixels; the "
                "layer still passes x through (1 point). Training judges the loss "
                "relative to its own scale, so part 7 keeps its points",
            )
        },
        feedback=tuple(CATALOGUE["loss_sum_pixels"].values()),
    ),
    sample(
        "encoder_padding_valid",
        'the encoder\'s convolutions without padding="same" (Keras\'s default "valid" shrinks 28x28 to 8x8)',
        mistakes={"encoder": rewritten("encoder", VALID_PADDING_ENCODER)},
        lost={
            "test_encoder": "the feature map before Flatten is (8, 8, 64), not (14, 14, 64)",
            "test_encoder_hidden": "layer 1 has padding 'valid', expected 'same' (and 223,908 parameters, not 494,244)",
            # Cross-part losses that remain: the shapes do not fit, so nothing downstream of the notebook's
            # own encoder can run; the messages point at part 1.
            "test_training": "cross-part: " + _PADDING_NOT_TRAINED + ", so there is no history",
            "test_training_hidden": "cross-part: the trained decoder makes 16x16 images; the message says to fix part 1",
            "test_manifold": "cross-part: build_manifold cannot cut 16x16 digits into 28x28 tiles, so `manifold` is "
            "never defined (the hidden manifold test uses stand-in decoders and passes)",
        },
        feedback=tuple(CATALOGUE["encoder_padding_valid"].values()),
    ),
    sample(
        "sampler_shared_noise",
        "the sampler draws one epsilon of shape (1, latent_dim) and shares it across the batch",
        mistakes={
            "sampling": (
                "keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)",
                "keras.random.normal((1, ops.shape(z_mean)[1]), seed=self.seed_generator)",
            )
        },
        lost={
            "test_sampling": "every row of one call gets the same z",
            "test_sampling_hidden": "all four checks: every row of one call is the same z (the reproducibility, "
            "gradient and serialisation checks also require a fresh draw per row, so that a "
            "constant cannot pass them)",
        },
        feedback=tuple(CATALOGUE["sampler_shared_noise"].values()),
    ),
    sample(
        "sampler_unseeded",
        "the sampler draws its noise without seed=self.seed_generator (right distribution, not reproducible)",
        mistakes={
            "sampling": (
                "keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)",
                "keras.random.normal(ops.shape(z_mean))",
            )
        },
        lost={"test_sampling": "two fresh Sampling(seed=1) layers draw different noise"},
        partial={
            "test_sampling_hidden": (
                2.5,
                "reproducibility (1 point) and serialisation (0.5: a rebuilt layer must "
                "draw what the original drew): the draws ignore the seed; statistics and "
                "gradients pass",
            )
        },
        feedback=tuple(CATALOGUE["sampler_unseeded"].values()),
    ),
    sample(
        "manifold_tiles_transposed",
        "the manifold's tiles transposed inside themselves (digits.transpose(0, 3, 1, 2): each digit lies on its side)",
        mistakes={"manifold": ("digits.transpose(0, 2, 1, 3)", "digits.transpose(0, 3, 1, 2)")},
        lost={
            "test_manifold": "the self-check's probe decoder finds z[1] missing from pixel (0, 1) of every tile"
        },
        partial={
            "test_manifold_hidden": (
                1,
                "the grid and layout (2 points): every tile is transposed inside itself; "
                "one batched call and unscrambled tiles pass",
            )
        },
        feedback=tuple(CATALOGUE["manifold_tiles_transposed"].values()),
    ),
    sample(
        "fit_without_validation",
        "vae.fit without validation_data (the cell's own print of val_loss then raises KeyError)",
        mistakes={"training": ("    validation_data=(x_val, None),\n", "")},
        lost={"test_training": "the history has no val_loss"},
        feedback=tuple(CATALOGUE["fit_without_validation"].values()),
    ),
    sample(
        "fit_validation_split",
        "validation_split=(x_val, None) where validation_data was meant: fit raises before the first step",
        mistakes={"training": ("validation_data=(x_val, None)", "validation_split=(x_val, None)")},
        lost={
            "test_training": "fit raised, so `history` is never assigned and the model is untrained",
            "test_training_hidden": "the encoder and decoder were never trained (every reconstruction is the same "
            "grey blur)",
        },
        feedback=tuple(CATALOGUE["fit_validation_split"].values()),
    ),
    sample(
        "loss_from_logits",
        "the cross-entropy with from_logits=True on the decoder's sigmoid output",
        mistakes={
            "loss_layer": (
                "keras.losses.binary_crossentropy(x_flat, decoded_flat)",
                "keras.losses.binary_crossentropy(x_flat, decoded_flat, from_logits=True)",
            )
        },
        lost={
            "test_loss_layer": "the loss for a zero code is softplus(p) - x p, the cross-entropy of logits",
            # Cross-part, measured: trained on that loss, the reconstructions are worse than fresh weights'
            # (cross-entropy 1.644 against 0.693), and part 7's message points back at part 4's from_logits.
            "test_training": "cross-part: the logits loss rewards something else than good reconstructions "
            "(1.644 per pixel against 0.693 for fresh weights); the message names from_logits in part 4",
            "test_training_hidden": "cross-part: the reconstructions do not resemble their input (error ratio 1.00)",
        },
        partial={
            "test_loss_layer_hidden": (
                1,
                "the loss value (3 points) is the cross-entropy of z_decoded read as logits; the layer still "
                "passes x through (1 point)",
            )
        },
        feedback=tuple(CATALOGUE["loss_from_logits"].values()),
    ),
    sample(
        "data_div256",
        "preprocess divides by 256 instead of 255 (order and shape right)",
        mistakes={
            "data": ('(images.astype("float32") / 255.0)', '(images.astype("float32") / 256.0)')
        },
        lost={"test_data": "x_train is MNIST in order, but a white pixel is 0.996, not 1.0"},
        partial={
            "test_data_hidden": (
                1,
                "preprocess() (1 point) returns 0.996 for 255: divided by 256; x_train and x_test are MNIST in "
                "order, scaled as preprocess() scales them (1 point)",
            )
        },
        feedback=tuple(CATALOGUE["data_div256"].values()),
    ),
    sample(
        "manifold_nan_grid",
        "the manifold grid through norm.ppf(np.linspace(0, 1, n)), whose ends are -inf and inf",
        mistakes={
            "manifold": (
                "grid = norm.ppf(np.linspace(0.05, 0.95, n))",
                "grid = norm.ppf(np.linspace(0, 1, n))",
            )
        },
        lost={
            "test_manifold": "the probe decoder's picture holds NaN in every edge tile: the grid's ends are infinite"
        },
        partial={
            "test_manifold_hidden": (
                1,
                "the grid and layout (2 points): the probe decoder's picture holds NaN in every edge tile, "
                "the grid's ends are infinite; one batched call and tiles in one piece, judged on the finite "
                "tiles, pass",
            )
        },
        feedback=tuple(CATALOGUE["manifold_nan_grid"].values()),
    ),
    sample(
        "manifold_cdf_grid",
        "the manifold grid through norm.cdf instead of norm.ppf (codes 0.52 to 0.83)",
        mistakes={
            "manifold": (
                "grid = norm.ppf(np.linspace(0.05, 0.95, n))",
                "grid = norm.cdf(np.linspace(0.05, 0.95, n))",
            )
        },
        lost={
            "test_manifold": "the probe decoder shows codes 0.52 to 0.83, not norm.ppf(linspace(0.05, 0.95, n))"
        },
        partial={
            "test_manifold_hidden": (
                1,
                "the grid and layout (2 points): the grid is not norm.ppf(np.linspace(0.05, 0.95, n)); one "
                "batched call and tiles in one piece pass",
            )
        },
        feedback=tuple(CATALOGUE["manifold_cdf_grid"].values()),
    ),
    # One mistake, one part: the points below are what a grader that judges every other part with stand-ins gives.
    sample(
        "encoder_custom_layer",
        "the encoder's convolutions wrapped in a custom Layer subclass (ConvBlock) of the student's own",
        mistakes={"encoder": rewritten("encoder", CUSTOM_LAYER_ENCODER)},
        lost={
            "test_encoder": "the encoder holds a layer class of the student's own, which the grader does not load "
            "(standard keras.layers only)",
            "test_encoder_hidden": "the same: its layers and parameters cannot be read from the model file",
            # Cross-part that remains: points come only from models the grader loads itself (docs/verdict-facts.md),
            # and it loads standard layers only, so the trained encoder cannot be judged either.
            "test_training": "cross-part: the trained encoder holds the custom layer, which the grader does not load",
            "test_training_hidden": "cross-part: the same",
        },
        feedback=tuple(CATALOGUE["encoder_custom_layer"].values()),
    ),
    sample(
        "encoder_dense_without_flatten",
        "the encoder's Flatten left out: Dense(32) and the z heads act on every position of the 14x14x64 map",
        mistakes={"encoder": ("    x = layers.Flatten()(x)\n", "")},
        lost={
            "test_encoder": "z_mean has shape (None, 14, 14, 2), expected (None, 2): Flatten before the Dense "
            "layers",
            "test_encoder_hidden": "the layers (no Flatten) and the output shape",
            # Cross-part that remains, as for encoder_stride1: shape_before_flattening finds no Flatten, so the
            # notebook's own decoder, VAE, training and manifold are never built.
            **_NOT_TRAINED,
            "test_manifold": "cross-part: `decoder` is never defined, so the manifold cell cannot draw `manifold`",
        },
        feedback=tuple(CATALOGUE["encoder_dense_without_flatten"].values()),
    ),
    sample(
        "decoder_relu_before_sigmoid",
        "the decoder's last Conv2D with ReLU, then a sigmoid: every pixel is at least 0.5",
        mistakes={
            "decoder": (
                'image = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)',
                'image = layers.Activation("sigmoid")(layers.Conv2D(1, 3, padding="same", activation="relu")(x))',
            )
        },
        lost={
            "test_decoder": "no decoded pixel is below 0.5: sigmoid of a ReLU output",
            # Cross-part that remains, as for decoder_no_sigmoid: a decoder that cannot draw a dark pixel cannot
            # learn to reconstruct; part 7's messages say to fix part 3.
            "test_training": "cross-part: the trained decoder is stuck at 0.5 and above (cross-entropy 0.6931, fresh "
            "weights 0.6932)",
            "test_training_hidden": "cross-part: the trained decoder is not part 3's decoder (a ReLU where the "
            "sigmoid belongs)",
        },
        partial={
            "test_decoder_hidden": (
                1,
                "the layers and parameters (2 points): a ReLU activation and an extra Activation layer where "
                "the sigmoid Conv2D belongs; latent_dim and shape_before_flattening are used (1 point)",
            )
        },
        feedback=tuple(CATALOGUE["decoder_relu_before_sigmoid"].values()),
    ),
    sample(
        "loss_no_add_loss",
        "the loss computed but never registered with self.add_loss",
        mistakes={
            "loss_layer": (
                "self.add_loss(reconstruction + KL_WEIGHT * ops.mean(kl))",
                "loss = reconstruction + KL_WEIGHT * ops.mean(kl)",
            )
        },
        lost={
            "test_loss_layer": "the layer adds no loss",
            # Training is the one part that depends on the others by nature (README, "What each part's
            # checks depend on"): with no loss, vae.fit cannot run, and the self-check names part 4 as the cause.
            "test_training": "vae.fit stopped because the VAE has no loss (the self-check says to add it with "
            "self.add_loss in part 4)",
            "test_training_hidden": "never trained: the reconstructions are the grey blur of fresh weights",
        },
        partial={
            "test_loss_layer_hidden": (
                1,
                "the loss value (3 points): no loss is added; the layer passes x through (1 point)",
            )
        },
        feedback=(
            *CATALOGUE["loss_no_add_loss"].values(),
            "vae.fit stopped because the VAE has no loss",
        ),
    ),
    sample(
        "fit_validation_on_train",
        "vae.fit validated on the training images: validation_data=(x_train, None)",
        mistakes={"training": ("validation_data=(x_val, None)", "validation_data=(x_train, None)")},
        lost={"test_training": "the history's val_loss is the loss on x_train, not on x_val"},
        feedback=("the validation data were not x_val",),
    ),
]
"""Plausible mistakes, each losing the points of its own part (cross-part losses say why)."""

SUBMISSIONS += CORRECT_VARIANTS + NEW_MISTAKES


def catalogue_markdown() -> str:
    """The catalogue of mistakes: for each, the graded cells it fails and the cause their message names."""
    out = [
        "## Catalogue: which check and message each mistake meets",
        "",
        "| student | graded cell | the message names (phrase) |",
        "|---|---|---|",
    ]
    for student, cells in CATALOGUE.items():
        for cell, phrase in cells.items():
            out.append(f"| `{student}` | `{cell}` | {phrase.replace('|', '/')} |")
    return "\n".join(out)
