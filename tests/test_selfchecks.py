"""The visible self-checks catch the mistakes the notebook warns about, and say what is wrong.

Each case takes the master's own cells (setup and the solution cells a self-check needs), puts one
warned-about mistake into one solution cell, runs the part's visible self-check cell exactly as the
notebook has it, and asserts the message the student would read. The same cells without the
mistake must pass, so a check that can no longer fail, or one that fails a correct solution, shows
up here. Everything runs in this process, no kernel: about 30 s.

``course.selfcheck`` runs the probe and the verdict through ``pack``/``unpack``, so what is checked
here is exactly what the grader concludes from the same data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import matplotlib
import nbformat
import pytest

from course.checks import SelfCheckFailed
from vae_grader.paths import MASTER
from vae_grader.cells import require_cell, solution_markers
from vae_samples.kit import solution_source

matplotlib.use("agg")

_MASTER = nbformat.read(MASTER, as_version=4)

# The cells each self-check needs before it, in notebook order (training is not needed).
NEEDS = {
    "test_encoder": ("encoder",),
    "test_sampling": ("sampling",),
    "test_decoder": ("encoder", "decoder"),
    "test_loss_layer": ("loss_layer",),
    "test_data": ("data",),
    "test_vae_model": ("encoder", "sampling", "decoder", "loss_layer", "vae_model"),
    "test_manifold": ("encoder", "decoder", "manifold"),
}


def _mistaken(source: str, old: str, new: str) -> str:
    assert old in source, f"the master's solution no longer contains {old!r}: update this case"
    return source.replace(old, new)


def run_self_check(test_cell: str, mistake: tuple[str, str, str] | None = None) -> None:
    """Run setup, the cells ``test_cell`` needs (one with ``mistake`` = (cell, old, new) applied), then the check."""
    import matplotlib.pyplot as plt

    namespace: dict = {"__name__": "__main__"}
    cells: Iterable[str] = ("setup", *NEEDS[test_cell])
    try:
        for grade_id in cells:
            source = (
                solution_source(_MASTER, grade_id)
                if grade_id != "setup"
                else require_cell(_MASTER, "setup").source
            )
            if mistake and mistake[0] == grade_id:
                source = _mistaken(source, mistake[1], mistake[2])
            exec(compile(source, f"<{grade_id}>", "exec"), namespace)
        exec(compile(require_cell(_MASTER, test_cell).source, f"<{test_cell}>", "exec"), namespace)
    finally:
        plt.close("all")


def _solution_lines() -> list[str]:
    """Lines of the master's solutions that a message must never quote (long enough to be code, not words)."""
    markers = solution_markers()
    inside = (line.strip() for cell in _MASTER.cells for line in markers.inside(cell.source))
    return [line for line in inside if len(line) > 24]


# (name, self-check cell, (solution cell, old, new), the message expected, as a regular expression)
MISTAKES = [
    (
        "encoder_stride1",
        "test_encoder",
        ("encoder", 'activation="relu", strides=2)', 'activation="relu")'),
        r"the feature map before Flatten has shape \(None, 28, 28, 64\); expected \(None, 14, 14, 64\): only the second "
        r"convolution has stride 2",
    ),
    # The default padding, "valid": 28 -> 26 -> 12 -> 10 -> 8.
    (
        "encoder_padding_valid",
        "test_encoder",
        ("encoder", 'padding="same", ', ""),
        r"the feature map before Flatten has shape \(None, 8, 8, 64\); expected \(None, 14, 14, 64\).*padding=\"same\"",
    ),
    (
        "sampler_exp_logvar",
        "test_sampling",
        ("sampling", "ops.exp(0.5 * z_log_var)", "ops.exp(z_log_var)"),
        r"the standard deviation of 4,000 draws with z_log_var = log 4 is \[4\.\d+ 4\.\d+\]; expected 2 = exp\(0\.5 \* log 4\) "
        r"in each dimension: exp\(z_log_var\) is the variance, not the standard deviation \(the 0\.5 is missing\)",
    ),
    (
        "sampler_numpy_noise",
        "test_sampling",
        (
            "sampling",
            "keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)",
            "np.random.normal(size=ops.shape(z_mean))",
        ),
        r"two fresh Sampling\(seed=1\) layers drew different noise; expected the same draws from the same seed: draw epsilon "
        r"with keras\.random\.normal\(\.\.\., seed=self\.seed_generator\), not np\.random",
    ),
    (
        "sampler_unseeded",
        "test_sampling",
        (
            "sampling",
            "keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)",
            "keras.random.normal(ops.shape(z_mean))",
        ),
        r"two fresh Sampling\(seed=1\) layers drew different noise",
    ),
    (
        "sampler_shared_noise",
        "test_sampling",
        (
            "sampling",
            "keras.random.normal(ops.shape(z_mean),",
            "keras.random.normal(ops.shape(z_mean)[1:],",
        ),
        r"all 2000 rows of one call got the same z \(.*\): the noise is shared across the batch; draw epsilon with the full "
        r"shape of z_mean",
    ),
    # z_mean.shape has no batch size inside a Keras model (build_vae would fail in part 5).
    (
        "sampler_static_shape",
        "test_sampling",
        ("sampling", "keras.random.normal(ops.shape(z_mean),", "keras.random.normal(z_mean.shape,"),
        r"^calling Sampling on keras\.Input tensors, as build_vae will, raised ValueError: inside a Keras model the batch "
        r"size is not known yet, so call\(\) must use keras\.ops and keras\.random only",
    ),
    (
        "decoder_relu",
        "test_decoder",
        ("decoder", 'activation="sigmoid")', 'activation="relu")'),
        r"for codes between -1000 and 1000 the decoded pixels range from 0\.000 to \d+\.\d+; they must lie in \[0, 1\] for "
        r"every code: end with a sigmoid",
    ),
    (
        "decoder_linear",
        "test_decoder",
        ("decoder", ', activation="sigmoid")', ")"),
        r"the decoded pixels range from -\d+\.\d+ to \d+\.\d+; they must lie in \[0, 1\]",
    ),
    (
        "kl_sign_flipped",
        "test_loss_layer",
        ("loss_layer", "kl = -ops.mean(", "kl = ops.mean("),
        r"for a code far from N\(0, I\) the loss is "
        r"0\.83608; expected 0\.83790 = reconstruction 0\.83699 \+ 5e-4 x KL 1\.8194: the KL term is subtracted",
    ),
    (
        "kl_weight_forgotten",
        "test_loss_layer",
        ("loss_layer", "KL_WEIGHT * ops.mean(kl)", "ops.mean(kl)"),
        r"is 2\.65636; expected 0\.83790 .*: the KL term is not multiplied by KL_WEIGHT",
    ),
    (
        "kl_missing",
        "test_loss_layer",
        ("loss_layer", " + KL_WEIGHT * ops.mean(kl)", ""),
        r"is 0\.83699; expected 0\.83790 .*: the KL term is missing",
    ),
    (
        "kl_summed_over_dims",
        "test_loss_layer",
        ("loss_layer", "kl = -ops.mean(", "kl = -ops.sum("),
        r"is 0\.83972; expected 0\.83790 .*: KL is -mean over the latent dimensions",
    ),
    (
        "kl_textbook_half_sum",
        "test_loss_layer",
        ("loss_layer", "kl = -ops.mean(", "kl = -0.5 * ops.sum("),
        r"is 0\.83835; expected 0\.83790 .*: KL is the textbook -0\.5 \* sum over the latent dims",
    ),
    (
        "compile_forgotten",
        "test_vae_model",
        (
            "vae_model",
            "    vae.compile(\n"
            "        optimizer=keras.optimizers.Adam(learning_rate),\n"
            "        loss=None,\n"
            "        steps_per_execution=steps_per_execution,\n"
            "    )\n",
            "",
        ),
        r"^the VAE is not compiled: call vae\.compile\(optimizer=\.\.\., loss=None\) inside build_vae$",
    ),
    # Wiring slips, found on the VAE the checker rebuilt from the model file and ran on its own images.
    (
        "vae_decoder_on_mean",
        "test_vae_model",
        ("vae_model", "z_decoded = decoder(z)", "z_decoded = decoder(z_mean)"),
        r"^the decoder should be called on the sampled z",
    ),
    (
        "vae_sampler_inputs_swapped",
        "test_vae_model",
        (
            "vae_model",
            "Sampling(seed=seed)([z_mean, z_log_var])",
            "Sampling(seed=seed)([z_log_var, z_mean])",
        ),
        r"^the Sampling layer should receive \[z_mean, z_log_var\], the encoder's two outputs, in that order$",
    ),
    # Rows and columns swapped: the transposed tile layout (what the demo student manifold_swapped does).
    (
        "manifold_swapped",
        "test_manifold",
        ("manifold", "z0, z1 = np.meshgrid(grid, grid)", "z1, z0 = np.meshgrid(grid, grid)"),
        r"the tiles are transposed: z\[0\] changes down a column and z\[1\] along a row; expected z\[0\] to change along a "
        r"row \(column j shows grid\[j\]\) and z\[1\] down a column \(row i shows grid\[i\]\)",
    ),
    (
        "manifold_tiles_transposed",
        "test_manifold",
        ("manifold", ".transpose(0, 2, 1, 3)", ".transpose(1, 2, 0, 3)"),
        r"the tiles are transposed: z\[0\] changes down a column",
    ),
    (
        "manifold_whole_image_transposed",
        "test_manifold",
        (
            "manifold",
            ".reshape(n * digit_size, n * digit_size)",
            ".reshape(n * digit_size, n * digit_size).T",
        ),
        r"the whole image is transposed \(tiles and the digits in them\)",
    ),
    (
        "manifold_no_transpose",
        "test_manifold",
        ("manifold", ".transpose(0, 2, 1, 3)", ""),
        r"the tiles are not where the text puts them: tile \(i, j\) must show z = \(grid\[j\], grid\[i\]\); "
        r"found z\[0\] = -1.64, 0, 0… along row 0",
    ),
    (
        "manifold_grid_reversed",
        "test_manifold",
        (
            "manifold",
            "grid = norm.ppf(np.linspace(0.05, 0.95, n))",
            "grid = norm.ppf(np.linspace(0.95, 0.05, n))",
        ),
        r"the grid runs backwards: z\[0\] must increase along a row",
    ),
    # Dense applied to the 14x14x64 feature map: each pixel gets its own code.
    (
        "encoder_no_flatten",
        "test_encoder",
        ("encoder", "    x = layers.Flatten()(x)\n", ""),
        r"^z_mean has shape \(None, 14, 14, 2\); expected \(None, 2\): the feature map was not flattened before the "
        r"Dense layers",
    ),
    # Registered in the kernel, unknown to the grader: it fails at home with the grader's own message.
    (
        "encoder_custom_activation",
        "test_encoder",
        (
            "encoder",
            'x = layers.Dense(32, activation="relu")(x)',
            "def my_relu(t):\n        return ops.relu(t)\n\n"
            '    x = layers.Dense(32, activation=keras.saving.register_keras_serializable("mine")(my_relu))(x)',
        ),
        r"^build_encoder\(2\) returned a model the grader cannot load \(layer dense(_\d+)? \(a Dense\) cannot be made from its "
        r"config\): use Keras's built-in layers and activations only \(keras\.layers: Conv2D, Dense, \.\.\.\), no Lambda "
        r"or custom layers$",
    ),
    (
        "encoder_lambda_layer",
        "test_encoder",
        (
            "encoder",
            "    x = layers.Flatten()(x)\n",
            "    x = layers.Lambda(lambda t: ops.reshape(t, (-1, 12544)))(x)\n",
        ),
        r"^build_encoder\(2\) returned a model the grader cannot load \(layer lambda(_\d+)? is a Lambda, which the grader "
        r"cannot size before loading it\): use Keras's built-in layers .*no Lambda or custom layers$",
    ),
    (
        "decoder_relu_before_sigmoid",
        "test_decoder",
        (
            "decoder",
            'image = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)',
            'image = layers.Activation("sigmoid")(layers.Conv2D(1, 3, padding="same", activation="relu")(x))',
        ),
        r"no decoded pixel is below 0\.500: what enters the sigmoid is never negative, so the decoder can never draw "
        r"the dark background",
    ),
    # The decoder's sigmoid output read as logits: Keras then computes softplus(p) - x p per pixel.
    (
        "loss_from_logits",
        "test_loss_layer",
        (
            "loss_layer",
            "keras.losses.binary_crossentropy(x_flat, decoded_flat)",
            "keras.losses.binary_crossentropy(x_flat, decoded_flat, from_logits=True)",
        ),
        r"the loss when z_mean = 0 and z_log_var = 0 is 0\.70094; expected 0\.83699 .*: the cross-entropy reads "
        r"z_decoded as logits \(from_logits=True\)",
    ),
    # 255 becomes 0.996: the order is right, only the scale is off, and the message says which.
    (
        "data_div256",
        "test_data",
        ("data", '(images.astype("float32") / 255.0)', '(images.astype("float32") / 256.0)'),
        r"^x_train holds the MNIST training images in MNIST's order, but its pixels are divided by 256 instead of "
        r"255, so a white pixel \(255\) becomes 0\.9961, not 1\.0: divide by 255$",
    ),
    # norm.ppf(0) and norm.ppf(1) are infinite: NaN is refused first, with its cause, not read as a pixel range.
    (
        "manifold_nan_grid",
        "test_manifold",
        (
            "manifold",
            "grid = norm.ppf(np.linspace(0.05, 0.95, n))",
            "grid = norm.ppf(np.linspace(0, 1, n))",
        ),
        r"^build_manifold\(decoder\) for a probe decoder holds [\d,]+ NaN or infinite pixels, in 56 of its 225 tiles, "
        r"all in its first or last row or column: the grid's ends are infinite \(norm\.ppf\(0\) = -inf",
    ),
    # The grid's values, judged at home as the hidden test judges them.
    (
        "manifold_linspace",
        "test_manifold",
        ("manifold", "grid = norm.ppf(np.linspace(0.05, 0.95, n))", "grid = np.linspace(-3, 3, n)"),
        r"^with the probe decoder: the grid is not norm\.ppf\(np\.linspace\(0\.05, 0\.95, n\)\): the tiles show "
        r"z = -3, -2\.57, -2\.14… to 3, evenly spaced in z \(np\.linspace\); expected -1\.64, -1\.2, -0\.921… "
        r"to 1\.64, evenly spaced in probability$",
    ),
    (
        "manifold_cdf_grid",
        "test_manifold",
        (
            "manifold",
            "grid = norm.ppf(np.linspace(0.05, 0.95, n))",
            "grid = norm.cdf(np.linspace(0.05, 0.95, n))",
        ),
        r"^with the probe decoder: the grid is not norm\.ppf\(np\.linspace\(0\.05, 0\.95, n\)\): the tiles show "
        r"z = 0\.52, 0\.5\d+, 0\.5\d+… to 0\.8\d+; expected",
    ),
]


@pytest.mark.parametrize(
    ("test_cell", "mistake", "message"),
    [case[1:] for case in MISTAKES],
    ids=[case[0] for case in MISTAKES],
)
def test_the_visible_self_check_names_the_mistake(
    test_cell: str, mistake: tuple[str, str, str], message: str
) -> None:
    with pytest.raises(AssertionError) as failure:
        run_self_check(test_cell, mistake)
    text = str(failure.value)
    assert re.search(message, text), f"the self-check said:\n{text}"
    quoted = [line for line in _solution_lines() if line in text]
    assert quoted == [], f"the message quotes the solution: {quoted}"
    # What the notebook and the Validate dialog show: the message alone, in at most 3 lines.
    assert isinstance(failure.value, SelfCheckFailed)
    shown = failure.value.lines()
    assert len(shown) <= 3, "\n".join(shown)


@pytest.mark.parametrize("test_cell", list(NEEDS))
def test_the_master_passes_its_self_check(
    test_cell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The master passes; for part 8 that includes a `manifold` drawn by an untrained decoder (a flat blur)."""
    run_self_check(test_cell)
    assert re.search(r"^Part \d self-check passed\.$", capsys.readouterr().out, re.M)


def test_every_visible_self_check_has_a_case() -> None:
    """Training needs a trained model; every other visible check is run above."""
    from course.selfcheck import PROBES

    assert set(PROBES) - set(NEEDS) == {"test_training"}
    assert {case[1] for case in MISTAKES} == set(NEEDS)
