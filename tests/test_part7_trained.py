"""What part 7 calls "trained" (docs/part7-trained.md): the attack of weights set without training and the models that must pass.

The attack: no VAE is fitted; a 2-component PCA of MNIST (NumPy SVD) is written into the Dense weights of
standard-layer encoder and decoder models, and the history is made up to agree with them. The probe data is
fabricated here the way the kernel would hand it over (``.keras`` bytes, history as JSON) and judged by the
grader's verdicts in this process. Before this change it scored 7/7 for part 7; now both checks that assert
training give 0, because part 7 judges the encoder and decoder of parts 1 and 3.

What stays possible is pinned down too: the same PCA written by hand into the weights of the course's own
convolutional architecture (a strict xfail: it earns the points, and no check of the returned models can
tell it from training). The master's own trained models and the architecture variants of correct students
must pass with margin.
"""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest

os.environ.setdefault("VAE_MODE", "grading")

from course import model_file, probing, selfcheck, training_budget  # noqa: E402
from course.selfcheck import part7_training as part7  # noqa: E402
from vae_grader.judge import hidden  # noqa: E402
from vae_grader.judge.hidden import training as hidden_training  # noqa: E402

LOG_VAR = -4.0
"""The attack's constant z_log_var: the best of -8, -4, -2 and 0 for the PCA's sampled loss (measured)."""


# --- the attack: a 2-component PCA, no fit of the VAE ---------------------------------------------------


def _pca() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean image, the first two principal directions (2, 784) and the s.d. of the scores, from the images the
    grading budget trains on."""
    x_train, _ = hidden_training.mnist()
    images = (x_train[: training_budget().train_images] / 255.0).reshape(-1, 784)
    mean = images.mean(axis=0)
    _, singular, directions = np.linalg.svd(images - mean, full_matrices=False)
    return mean, directions[:2], singular[:2] / np.sqrt(len(images))


def _clip_knots() -> tuple[np.ndarray, np.ndarray, float]:
    """A piecewise-linear logit (knots, slopes, offset) such that sigmoid(logit(y)) = 0.01 + 0.98 * clip(y, 0, 1)
    for y >= 0, as a sum of relu(y - knot): the nonlinearity the course's decoder can express with its last two
    layers (a relu per channel of the transposed convolution, then a weighted sum and a sigmoid)."""
    knots = np.linspace(0.0, 1.0, 31)
    grid = np.linspace(0.0, 1.5, 601)
    target = 0.01 + 0.98 * np.clip(grid, 0, 1)
    logit = np.log(target / (1 - target))
    design = np.concatenate([np.maximum(grid[:, None] - knots, 0), np.ones((len(grid), 1))], axis=1)
    solution = np.linalg.lstsq(design, logit, rcond=None)[0]
    return knots, solution[:-1], float(solution[-1])


def pca_dense_models() -> tuple[object, object]:
    """The reported attack: Flatten -> Dense(2) encoder, Dense(784) -> clip decoder, weights from the PCA."""
    import keras
    from keras import layers

    mean, directions, sd = _pca()
    to_code = (directions / sd[:, None]).T  # (784, 2): unit-variance scores
    image = keras.Input((28, 28, 1))
    flat = layers.Flatten()(image)
    z_mean, z_log_var = layers.Dense(2)(flat), layers.Dense(2)(flat)
    encoder = keras.Model(image, [z_mean, z_log_var])
    encoder.layers[2].set_weights([to_code.astype("float32"), (-mean @ to_code).astype("float32")])
    encoder.layers[3].set_weights([np.zeros((784, 2), "float32"), np.full(2, LOG_VAR, "float32")])
    code = keras.Input((2,))
    linear = layers.Dense(784)
    pixels = layers.Rescaling(0.98, offset=0.01)(layers.ReLU(max_value=1.0)(linear(code)))
    decoder = keras.Model(code, layers.Reshape((28, 28, 1))(pixels))
    linear.set_weights([(directions * sd[:, None]).astype("float32"), mean.astype("float32")])
    return encoder, decoder


def pca_in_the_course_architecture() -> tuple[object, object]:
    """The same PCA written by hand into the weights of the encoder and decoder parts 1 and 3 ask for.

    Encoder: the first convolution copies the image, the stride-2 one splits it into its four 14x14 phases
    (pixel (2i + a, 2j + b) on channel 2a + b), the next two copy those, Dense(32) holds relu(+-score) of both
    components, and z_mean = relu(s) - relu(-s). Decoder: Dense(14*14*64) computes relu(mean + A z) for every
    pixel on its phase's channel, the transposed convolution puts the phases back in place on 31 channels with
    the biases -knot, and the last convolution sums them into the logit of 0.01 + 0.98 * clip(y, 0, 1).
    """
    import keras
    from keras import layers

    mean, directions, sd = _pca()
    scores = (directions / sd[:, None]).T  # (784, 2)
    rows, cols = np.divmod(np.arange(784), 28)
    # Where Flatten puts each pixel's copy: position (row // 2, col // 2), channel 2 * (row % 2) + col % 2.
    feature = ((rows // 2) * 14 + cols // 2) * 64 + 2 * (rows % 2) + cols % 2

    image = keras.Input((28, 28, 1))
    convs = [
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
    ]
    x = image
    for conv in convs:
        x = conv(x)
    dense, z_mean_layer, z_log_var_layer = (
        layers.Dense(32, activation="relu"),
        layers.Dense(2),
        layers.Dense(2),
    )
    hidden_units = dense(layers.Flatten()(x))
    encoder = keras.Model(image, [z_mean_layer(hidden_units), z_log_var_layer(hidden_units)])

    def kernel(shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, "float32")

    copy = kernel((3, 3, 1, 32))
    copy[1, 1, 0, 0] = 1
    convs[0].set_weights([copy, kernel((32,))])
    phases = kernel((3, 3, 32, 64))
    for a in (0, 1):
        for b in (0, 1):
            phases[a, b, 0, 2 * a + b] = 1
    convs[1].set_weights([phases, kernel((64,))])
    identity = kernel((3, 3, 64, 64))
    for channel in range(4):
        identity[1, 1, channel, channel] = 1
    for conv in convs[2:]:
        conv.set_weights([identity, kernel((64,))])
    weights, bias = kernel((14 * 14 * 64, 32)), kernel((32,))
    for component in (0, 1):
        for sign, unit in ((1, 2 * component), (-1, 2 * component + 1)):
            weights[feature, unit] = sign * scores[:, component]
            bias[unit] = -sign * float(mean @ scores[:, component])
    dense.set_weights([weights, bias])
    signs = kernel((32, 2))
    signs[[0, 1, 2, 3], [0, 0, 1, 1]] = [1, -1, 1, -1]
    z_mean_layer.set_weights([signs, kernel((2,))])
    z_log_var_layer.set_weights([kernel((32, 2)), np.full(2, LOG_VAR, "float32")])

    knots, slopes, offset = _clip_knots()
    code = keras.Input((2,))
    expand = layers.Dense(14 * 14 * 64, activation="relu")
    place = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")
    to_pixels = layers.Conv2D(1, 3, padding="same", activation="sigmoid")
    decoder = keras.Model(code, to_pixels(place(layers.Reshape((14, 14, 64))(expand(code)))))
    weights, bias = kernel((2, 14 * 14 * 64)), kernel((14 * 14 * 64,))
    weights[:, feature] = (directions * sd[:, None]).astype("float32")
    bias[feature] = mean
    expand.set_weights([weights, bias])
    spread = kernel((3, 3, 32, 64))  # Conv2DTranspose: (height, width, filters out, channels in)
    for a in (0, 1):
        for b in (0, 1):
            spread[a, b, : len(knots), 2 * a + b] = 1
    place_bias = kernel((32,))
    place_bias[: len(knots)] = -knots
    place.set_weights([spread, place_bias])
    weigh = kernel((3, 3, 32, 1))
    weigh[1, 1, : len(knots), 0] = slopes
    to_pixels.set_weights([weigh, np.array([offset], "float32")])
    return encoder, decoder


def probe_data(encoder, decoder, val_loss: float | None = None) -> dict:
    """What the kernel hands over for part 7 (both cells), made here: the models' bytes and a made-up history.

    ``val_loss`` None: the history states the loss these models really reach on x_val (the strongest
    forgery, computed with the checker's own function); a number: a history invented to look good."""
    budget = training_budget()
    if val_loss is None:
        _, x_test = hidden_training.mnist()
        x_val = (x_test[: budget.val_images] / 255.0).astype("float32")[..., None]
        terms = part7.validation_terms(encoder, decoder, x_val, budget.batch_size)
        val_loss = terms.reconstruction + part7.KL_WEIGHT * terms.kl
    data = {
        probing.ERRORS: {},
        "history.json": {
            "loss": [val_loss + 0.01] * budget.epochs,
            "val_loss": [val_loss] * budget.epochs,
        },
        "encoder.keras": model_file.model_bytes(encoder),
        "decoder.keras": model_file.model_bytes(decoder),
        "encoder.is_model": True,
        "decoder.is_model": True,
    }
    return probing.unpack(probing.pack(data))


def judge_both(data: dict) -> tuple:
    return (
        selfcheck.judge(selfcheck.PROBES["test_training"], data),
        hidden.judge("test_training_hidden", data),
    )


@pytest.fixture(scope="module")
def pca_dense() -> dict:
    return probe_data(*pca_dense_models())


def test_the_pca_attack_reconstructs_like_a_trained_vae(pca_dense) -> None:
    """Why the architecture decides: by what its models compute, the PCA is as good as a short training
    (measured: error ratio 0.785, sampled reconstruction term 0.228, inside the master's 0.208-0.234)."""
    from course.quality import reconstruction_report
    from course.selfcheck.probe import load_saved, to_numpy

    encoder = load_saved(pca_dense, "encoder", "the trained encoder")
    decoder = load_saved(pca_dense, "decoder", "the trained decoder")
    _, x_test = hidden_training.mnist()
    quality = (x_test[:200] / 255.0).astype("float32")[..., None]
    ratio = reconstruction_report(quality, to_numpy(decoder(encoder(quality)[0]))).ratio
    x_val = (x_test[: training_budget().val_images] / 255.0).astype("float32")[..., None]
    reached = hidden_training.sampled_reconstruction(encoder, decoder, x_val)
    assert ratio < hidden_training.RATIO_THRESHOLD, ratio
    assert reached <= part7.TRAINED_RECONSTRUCTION, reached


def test_the_pca_attack_earns_nothing_for_training(pca_dense) -> None:
    visible, hidden_outcome = judge_both(pca_dense)
    assert visible.points == 0 and hidden_outcome.points == 0, (visible, hidden_outcome)
    assert any("feature map before Flatten" in f and "part 1" in f for f in visible.failures)
    assert any(
        "is not the encoder part 1 asks for" in f and "fix part 1" in f
        for f in hidden_outcome.failures
    ), hidden_outcome.failures


def test_the_pca_attack_with_an_invented_history_earns_nothing(pca_dense) -> None:
    data = dict(pca_dense)
    data["history.json"] = {"loss": [0.21] * training_budget().epochs, "val_loss": [0.2]}
    visible, hidden_outcome = judge_both(data)
    assert visible.points == 0 and hidden_outcome.points == 0


@pytest.mark.xfail(
    strict=True,
    reason="residual risk (docs/part7-trained.md): weights written by hand into the course's own architecture "
    "that reconstruct like a trained VAE cannot be told from training by any check of the returned models",
)
def test_a_pca_written_into_the_course_architecture_earns_nothing() -> None:
    visible, hidden_outcome = judge_both(probe_data(*pca_in_the_course_architecture()))
    assert visible.points == 0 and hidden_outcome.points == 0


# --- what must keep passing ------------------------------------------------------------------------------


def _models_of(student: str) -> tuple[object, object]:
    """The untrained encoder and decoder a demo student's own cells build (enough to read their architecture)."""
    from vae_grader.cells import require_cell
    from vae_samples import demo
    from vae_samples.kit import load_master_and_release

    master, release = load_master_and_release()
    nb = next(s for s in demo.SUBMISSIONS if s.student == student).build(master, release)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in ("setup", "encoder", "decoder"):
            exec(compile(require_cell(nb, cell).source, f"<{cell}>", "exec"), namespace)  # noqa: S102
    return namespace["encoder"], namespace["decoder"]


@pytest.mark.parametrize("student", ["complete", "sequential_blocks", "activation_layers"])
def test_correct_ways_of_writing_the_models_are_the_architecture(student) -> None:
    encoder, decoder = _models_of(student)
    data = probing.unpack(
        probing.pack(
            {
                probing.ERRORS: {},
                "encoder.keras": model_file.model_bytes(encoder),
                "decoder.keras": model_file.model_bytes(decoder),
            }
        )
    )
    assert hidden_training.architecture_problem(data) is None


def test_another_architecture_is_told_to_fix_part_1() -> None:
    import keras
    from keras import layers

    _, decoder = _models_of("complete")
    image = keras.Input((28, 28, 1))
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(image)
    x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)  # 64 units where part 1 asks for 32
    encoder = keras.Model(image, [layers.Dense(2)(x), layers.Dense(2)(x)])
    data = probing.unpack(
        probing.pack(
            {
                probing.ERRORS: {},
                "encoder.keras": model_file.model_bytes(encoder),
                "decoder.keras": model_file.model_bytes(decoder),
            }
        )
    )
    problem = hidden_training.architecture_problem(data)
    assert problem is not None and "fix part 1" in problem and "units=64" in problem, problem


def test_another_decoder_is_told_to_fix_part_3() -> None:
    encoder, _ = _models_of("complete")
    _, decoder = pca_dense_models()
    data = probing.unpack(
        probing.pack(
            {
                probing.ERRORS: {},
                "encoder.keras": model_file.model_bytes(encoder),
                "decoder.keras": model_file.model_bytes(decoder),
            }
        )
    )
    problem = hidden_training.architecture_problem(data)
    assert problem is not None and "the decoder part 3 asks for" in problem, problem
    assert "fix part 3" in problem


@pytest.fixture(scope="module")
def trained_master() -> dict:
    """The master's solution cells run here with the grading budget (seed 0, about 15-40 s), then probed."""
    import nbformat

    from vae_grader.cells import require_cell
    from vae_grader.paths import MASTER
    from vae_grader.submissions import PARTS

    master = nbformat.read(MASTER, as_version=4)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in ("setup", *PARTS[: PARTS.index("training") + 1]):
            exec(compile(require_cell(master, cell).source, f"<{cell}>", "exec"), namespace)  # noqa: S102
    data = selfcheck.run_probe(selfcheck.PROBES["test_training"], namespace)
    return probing.unpack(probing.pack(data))


@pytest.mark.slow
def test_the_trained_master_passes_with_margin(trained_master) -> None:
    from course.selfcheck.probe import load_saved

    visible, hidden_outcome = judge_both(trained_master)
    assert visible.full and hidden_outcome.full, (visible.failures, hidden_outcome.failures)
    budget = training_budget()
    encoder = load_saved(trained_master, "encoder", "the trained encoder")
    decoder = load_saved(trained_master, "decoder", "the trained decoder")
    _, x_test = hidden_training.mnist()
    x_val = (x_test[: budget.val_images] / 255.0).astype("float32")[..., None]
    terms = part7.validation_terms(encoder, decoder, x_val, budget.batch_size)
    # Seed 0 measured: reconstruction term 0.2141 against the threshold 0.25; history within 0.30 %.
    assert terms.reconstruction <= part7.TRAINED_RECONSTRUCTION - 0.02, terms
    stated = trained_master["history.json"]["val_loss"][-1]
    course_loss = terms.reconstruction + part7.KL_WEIGHT * terms.kl
    assert abs(stated - course_loss) <= part7.HISTORY_TOLERANCE / 2 * course_loss, (
        stated,
        course_loss,
    )
    # The checker's and the grader's estimates of the reconstruction term are the same quantity (own noise each).
    assert (
        abs(hidden_training.sampled_reconstruction(encoder, decoder, x_val) - terms.reconstruction)
        < 0.002
    )


@pytest.mark.slow
def test_a_history_that_is_not_these_models_fails_only_the_visible_check(trained_master) -> None:
    data = dict(trained_master)
    data["history.json"] = {
        "loss": [0.19] * training_budget().epochs,
        "val_loss": [0.19] * training_budget().epochs,
    }
    visible, hidden_outcome = judge_both(data)
    assert visible.points == 0 and any("history's last val_loss" in f for f in visible.failures)
    assert hidden_outcome.full, hidden_outcome.failures


@pytest.mark.slow
@pytest.mark.parametrize(
    "scale, kl_weight, name",
    [
        (784.0, part7.KL_WEIGHT, "reconstruction summed over the pixels"),
        (1.0, 0.0, "KL term missing"),
        (1.0, 1.0, "KL term without its weight"),
    ],
)
def test_a_history_of_a_part4_slip_still_matches(trained_master, scale, kl_weight, name) -> None:
    """A slip in part 4 changes what the history's val_loss measures; part 7 must not lose points for it."""
    from course.selfcheck.probe import load_saved

    budget = training_budget()
    encoder = load_saved(trained_master, "encoder", "the trained encoder")
    decoder = load_saved(trained_master, "decoder", "the trained decoder")
    _, x_test = hidden_training.mnist()
    x_val = (x_test[: budget.val_images] / 255.0).astype("float32")[..., None]
    terms = part7.validation_terms(encoder, decoder, x_val, budget.batch_size)
    # 0.3 % off: Keras's own draw of the noise (the largest difference measured on the master).
    stated = (scale * terms.reconstruction + kl_weight * terms.kl) * 1.003
    assert part7.history_problem(stated, terms) is None, name
