"""Fair grading, in this process: every demo variant is judged cell by cell, in seconds.

Each sample student's notebook is built exactly as the pipeline builds it (release + master +
substitution), its code cells are run here in one namespace (test cells skipped, as the grader
skips them), and then every graded cell the variant touches is probed and judged with the same
probe and verdict the grader uses (``course.selfcheck`` / ``vae_grader.judge.hidden``). Asserted per
cell: the points the manifest expects, and for every mistake in the catalogue
(``vae_samples.demo.CATALOGUE``) that the failure message names its cause.

What stays for the pipeline tests (tests/test_pipeline.py): cells that need the grading budget's
real training to pass (the training cells of students whose training is fine). Here training runs
on 64 images only, enough to produce a ``history`` or fail the way the student's code fails.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Mapping
from typing import Any

import pytest

os.environ.setdefault("VAE_MODE", "grading")
os.environ.setdefault("MPLBACKEND", "Agg")

import nbformat  # noqa: E402
from nbgrader import utils  # noqa: E402

from course import probing, selfcheck  # noqa: E402
from course.checks import Outcome  # noqa: E402
from vae_grader.judge import hidden  # noqa: E402
from vae_grader.judge.hidden import loss as hidden_loss  # noqa: E402
from vae_grader.submissions import PARTS, Submission  # noqa: E402
from vae_grader.submissions import test_cells as cells_of  # noqa: E402
from vae_samples import demo  # noqa: E402
from vae_samples.kit import load_master_and_release  # noqa: E402

pytestmark = (
    pytest.mark.slow
)  # every variant's cells run in this process, training included: about two minutes

TRAINING_IMAGES = 64
"""Images the training cell sees here: 4 steps, enough for a history or for the student's own error."""
TRAINING_CELLS = set(cells_of("training"))


@pytest.fixture(scope="module")
def notebooks() -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    return load_master_and_release()


def _code_cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(cell id, source) of the code cells a grader runs, up to the last graded cell (test cells excluded)."""
    cells = [c for c in nb.cells if c.cell_type == "code"]
    last = max(i for i, c in enumerate(cells) if utils.is_grade(c))
    out = []
    for index, cell in enumerate(cells[: last + 1]):
        if utils.is_grade(cell) and not utils.is_solution(cell):
            continue
        out.append((cell.metadata.get("nbgrader", {}).get("grade_id", f"cell{index}"), cell.source))
    return out


def _run(source: str, namespace: dict[str, Any], name: str) -> str | None:
    """Run one cell like the grader (an error is recorded and the notebook goes on); returns the error, if any."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            exec(compile(source, f"<cell {name}>", "exec"), namespace)
        except Exception as exc:  # the student's cell may raise anything
            return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="module")
def complete(notebooks) -> dict[str, Any]:
    """The complete student's namespace without training (the cells before part 7), shared by every variant."""
    master, release = notebooks
    nb = demo.sample("complete", "x").build(master, release)
    namespace: dict[str, Any] = {}
    for cell_id, source in _code_cells(nb):
        if cell_id in ("training", "manifold"):
            break
        assert _run(source, namespace, cell_id) is None, cell_id
    return namespace


def _forget_unreached(source: str, namespace: dict[str, Any], complete: Mapping[str, Any]) -> None:
    """After a cell raised: drop the names it assigns that still hold the complete student's values. In the
    student's own kernel the cell never reached them, so they are undefined there (e.g. `decoder` when
    build_decoder's cell fails), and a later check must not judge the complete student's object instead."""
    import ast

    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        for name in (t.id for t in targets if isinstance(t, ast.Name)):
            if name in complete and namespace.get(name) is complete[name]:
                del namespace[name]


def _changed_cells(sub: Submission, notebooks) -> list[str]:
    master, release = notebooks
    ours = {cid: src for cid, src in _code_cells(sub.build(master, release))}
    reference = {
        cid: src for cid, src in _code_cells(demo.sample("complete", "x").build(master, release))
    }
    return [cid for cid in ours if ours[cid] != reference[cid]]


def run_cell(source: str, namespace: dict[str, Any], cell_id: str) -> str | None:
    """:func:`_run`, with the training cell fitting on ``TRAINING_IMAGES`` images (``x_train`` restored after)."""
    if cell_id != "training":
        return _run(source, namespace, cell_id)
    full = namespace.get("x_train")
    namespace["x_train"] = None if full is None else full[:TRAINING_IMAGES]
    try:
        return _run(source, namespace, cell_id)
    finally:
        namespace["x_train"] = full


def student_namespace(
    sub: Submission, notebooks, complete: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The variant's namespace: the complete student's, with the variant's cells and every cell after them re-run.

    When training is involved the models are rebuilt first, so no variant trains another's weights.
    """
    master, release = notebooks
    changed = _changed_cells(sub, notebooks)
    cells = _code_cells(sub.build(master, release))
    ids = [cid for cid, _ in cells]
    first = min(ids.index(cid) for cid in changed)
    if "training" in changed or any(cell in sub.lost for cell in TRAINING_CELLS):
        first = min(first, ids.index("encoder"))
    namespace = dict(complete)
    for cell_id, source in cells[first:]:
        if cell_id == "data" and "data" not in changed:
            continue  # the slowest cell: re-run only for a variant that changes it
        if run_cell(source, namespace, cell_id) is not None and cell_id != "training":
            _forget_unreached(source, namespace, complete)
    if "manifold" in changed and "build_manifold" in namespace:
        # The visible check judges the picture: draw it with a decoder whose images vary (the untrained one is flat).
        from course.stand_ins import smooth_decoder

        namespace["manifold"] = namespace["build_manifold"](smooth_decoder())
    return namespace, changed


def judge_cell(grade_id: str, namespace: Mapping[str, Any]) -> Outcome:
    """The grader's verdict on one graded cell: its probe on ``namespace``, through pack/unpack, then its verdict."""
    if grade_id in selfcheck.PROBES:
        spec = selfcheck.PROBES[grade_id]
        return selfcheck.judge(
            spec, probing.unpack(probing.pack(selfcheck.run_probe(spec, namespace)))
        )
    spec = hidden.probe_spec(grade_id)
    return hidden.judge(
        grade_id, probing.unpack(probing.pack(selfcheck.run_probe(spec, namespace)))
    )


def judged_cells(sub: Submission, changed: list[str]) -> list[str]:
    """The graded cells of the changed parts and every cell the manifest marks down, except training cells
    that must pass (those need the grading budget's real training: the pipeline tests check them)."""
    cells = (
        {cell for part in PARTS if part in changed for cell in cells_of(part)}
        | set(sub.lost)
        | set(sub.partial)
    )
    return sorted(
        cell
        for cell in cells
        if cell not in TRAINING_CELLS or float(sub.expected.get(cell, 0.0)) == 0.0
    )


# --- extra variants, judged here only (the demo set keeps the pipeline's run short) ------------------

EXTRA_CORRECT = [
    demo.sample(
        "loss_bce_object",
        "keras.losses.BinaryCrossentropy()(x, z_decoded) on the 4-D tensors",
        mistakes={
            "loss_layer": (
                "ops.mean(keras.losses.binary_crossentropy(x_flat, decoded_flat))",
                "keras.losses.BinaryCrossentropy()(x, z_decoded)",
            )
        },
    ),
    demo.sample(
        "loss_ops_bce",
        "ops.binary_crossentropy per pixel, then ops.mean",
        mistakes={
            "loss_layer": (
                "ops.mean(keras.losses.binary_crossentropy(x_flat, decoded_flat))",
                "ops.mean(ops.binary_crossentropy(x_flat, decoded_flat))",
            )
        },
    ),
    demo.sample(
        "vae_lists_and_keywords",
        "build_vae with the encoder's outputs indexed, a named sampler, keras.Model(inputs=[image], "
        "outputs=[output]) and Adam(learning_rate=...) (the VAE is loaded and run by the grader)",
        mistakes={
            "vae_model": demo.rewritten(
                "vae_model",
                """
                    image = layers.Input((28, 28, 1))
                    encoded = encoder(image)
                    z_mean, z_log_var = encoded[0], encoded[1]
                    sampler = Sampling(seed=seed, name="z")
                    reconstruction = decoder(sampler([z_mean, z_log_var]))
                    loss_output = CustomVariationalLayer(name="vae_loss")(
                        [image, reconstruction, z_mean, z_log_var]
                    )
                    vae = keras.Model(inputs=[image], outputs=[loss_output])
                    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
                    vae.compile(optimizer=optimizer, loss=None, steps_per_execution=steps_per_execution)
                    return vae
                """,
            )
        },
    ),
    demo.sample(
        "vae_encoder_called_twice",
        "build_vae calling the encoder once for z_mean and once for z_log_var (same weights, same values)",
        mistakes={
            "vae_model": demo.rewritten(
                "vae_model",
                """
                    image = keras.Input(shape=(28, 28, 1))
                    z_mean = encoder(image)[0]
                    z_log_var = encoder(image)[1]
                    z = Sampling(seed=seed)([z_mean, z_log_var])
                    vae = keras.Model(image, CustomVariationalLayer()([image, decoder(z), z_mean, z_log_var]))
                    vae.compile(keras.optimizers.Adam(learning_rate), None, steps_per_execution=steps_per_execution)
                    return vae
                """,
            )
        },
    ),
    demo.sample(
        "sampler_half_log_var",
        "exp(z_log_var / 2) and noise shaped like z_log_var",
        mistakes={
            "sampling": demo.rewritten(
                "sampling",
                """
                    epsilon = keras.random.normal(shape=ops.shape(z_log_var), seed=self.seed_generator)
                    return z_mean + ops.exp(z_log_var / 2) * epsilon
                """,
            )
        },
    ),
]

_KL = "kl = -ops.mean(1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)"
_LOSS_SLIP = (1, "the loss value fails, x passes through")
_VISIBLE_LOSS = {"test_loss_layer": "the self-check's loss for a nonzero code is off"}
EXTRA_MISTAKES: list[tuple[Submission, dict[str, str]]] = [
    (
        demo.sample(
            "kl_missing",
            "the KL term left out",
            mistakes={
                "loss_layer": ("reconstruction + KL_WEIGHT * ops.mean(kl)", "reconstruction")
            },
            lost=_VISIBLE_LOSS,
            partial={"test_loss_layer_hidden": _LOSS_SLIP},
        ),
        {"test_loss_layer_hidden": "the KL term is missing"},
    ),
    (
        demo.sample(
            "kl_unweighted",
            "the KL term without its weight",
            mistakes={
                "loss_layer": (
                    "reconstruction + KL_WEIGHT * ops.mean(kl)",
                    "reconstruction + ops.mean(kl)",
                )
            },
            lost=_VISIBLE_LOSS,
            partial={"test_loss_layer_hidden": _LOSS_SLIP},
        ),
        {"test_loss_layer_hidden": "without its weight"},
    ),
    (
        demo.sample(
            "kl_summed_latent",
            "the KL term summed over the latent dimensions",
            mistakes={"loss_layer": (_KL, _KL.replace("ops.mean", "ops.sum"))},
            lost=_VISIBLE_LOSS,
            partial={"test_loss_layer_hidden": _LOSS_SLIP},
        ),
        {"test_loss_layer_hidden": "summed over the latent dimensions"},
    ),
    (
        demo.sample(
            "kl_textbook_half_sum",
            "the KL term in the textbook form, -0.5 * sum over the latent dimensions",
            mistakes={"loss_layer": (_KL, _KL.replace("-ops.mean(", "-0.5 * ops.sum("))},
            lost=_VISIBLE_LOSS,
            partial={"test_loss_layer_hidden": _LOSS_SLIP},
        ),
        {"test_loss_layer": "textbook -0.5 * sum", "test_loss_layer_hidden": "textbook -0.5 * sum"},
    ),
    (
        demo.sample(
            "kl_summed_batch",
            "the KL term summed over the batch",
            mistakes={"loss_layer": ("KL_WEIGHT * ops.mean(kl)", "KL_WEIGHT * ops.sum(kl)")},
            lost=_VISIBLE_LOSS,
            partial={"test_loss_layer_hidden": _LOSS_SLIP},
        ),
        {"test_loss_layer_hidden": "summed over the batch"},
    ),
    (
        demo.sample(
            "wrong_epochs",
            "epochs=10 typed in instead of budget.epochs",
            mistakes={"training": ("epochs=budget.epochs", "epochs=10")},
            lost={"test_training": "x"},
        ),
        {"test_training": "epoch"},
    ),
    (
        demo.sample(
            "encoder_no_flatten",
            "Dense applied to the 14x14x64 feature map (Flatten left out)",
            mistakes={"encoder": ("    x = layers.Flatten()(x)\n", "")},
            lost={"test_encoder": "x", "test_encoder_hidden": "x"},
        ),
        {"test_encoder": "the feature map was not flattened before the Dense layers"},
    ),
    (
        demo.sample(
            "decoder_relu_before_sigmoid",
            "a ReLU between the last Conv2D and the sigmoid",
            mistakes={
                "decoder": (
                    'image = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)',
                    'image = layers.Activation("sigmoid")(layers.Conv2D(1, 3, padding="same", activation="relu")(x))',
                )
            },
            lost={"test_decoder": "x", "test_training": "x"},
            partial={"test_decoder_hidden": (1, "latent_dim and shape_before_flattening used")},
        ),
        {
            "test_decoder": "what enters the sigmoid is never negative",
            "test_training": "stuck at sigmoid(0)",
        },
    ),
    (
        demo.sample(
            "loss_no_add_loss",
            "the loss layer computes the loss but never calls self.add_loss",
            mistakes={
                "loss_layer": (
                    "        self.add_loss(reconstruction + KL_WEIGHT * ops.mean(kl))\n",
                    "",
                )
            },
            lost={
                "test_loss_layer": "x",
                "test_training": "x",
                "test_training_hidden": "x",
            },
            partial={"test_loss_layer_hidden": (1, "x passes through")},
        ),
        {"test_training": "CustomVariationalLayer must add the VAE loss with self.add_loss"},
    ),
]
"""Mistakes judged here only, with the phrase each failing cell's message must contain."""


def _demo(name: str) -> Submission:
    return next(s for s in demo.SUBMISSIONS if s.student == name)


CASES: list[tuple[Submission, Mapping[str, str]]] = (
    [(s, {}) for s in demo.CORRECT_VARIANTS + EXTRA_CORRECT]
    + [(_demo(name), phrases) for name, phrases in demo.CATALOGUE.items()]
    + EXTRA_MISTAKES
)


def test_every_new_demo_student_is_judged_here() -> None:
    judged = {s.student for s, _ in CASES}
    assert {s.student for s in demo.CORRECT_VARIANTS + demo.NEW_MISTAKES} <= judged
    assert set(demo.CATALOGUE) == {s.student for s in demo.NEW_MISTAKES}
    for sub in demo.CORRECT_VARIANTS:
        assert sum(sub.expected.values()) == 40 and not sub.lost and not sub.partial, sub.student


@pytest.mark.parametrize("sub,phrases", CASES, ids=[s.student for s, _ in CASES])
def test_each_cell_scores_what_the_manifest_says_and_names_the_cause(
    sub, phrases, notebooks, complete
) -> None:
    namespace, changed = student_namespace(sub, notebooks, complete)
    problems = []
    for cell in judged_cells(sub, changed):
        outcome = judge_cell(cell, namespace)
        want = float(sub.expected.get(cell, 0.0))
        if abs(outcome.points - want) > 1e-9:
            problems.append(
                f"{cell}: {outcome.points:g} points, the manifest expects {want:g}; {outcome.failures}"
            )
        phrase = phrases.get(cell)
        if phrase and not any(phrase in failure for failure in outcome.failures):
            problems.append(f"{cell}: no message names the cause ({phrase!r}): {outcome.failures}")
    missing = set(phrases) - set(judged_cells(sub, changed))
    assert not missing, f"catalogue cells never judged: {missing}"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "message,formula",
    hidden_loss.LOSS_SLIPS,
    ids=[m.split(":")[0][:40] for m, _ in hidden_loss.LOSS_SLIPS],
)
def test_each_loss_slip_is_told_apart_from_the_others(message, formula) -> None:
    """On the hidden test's batches every slip's loss matches its own diagnosis and no other one
    (on each batch where it differs from the right loss: the textbook half-sum equals the text's mean
    for 2 latent dimensions, and one batch has another size)."""
    from vae_grader.judge.hidden import inputs as probe_inputs

    told = 0
    for inputs in probe_inputs.loss_batches():
        terms = hidden_loss.loss_terms(*inputs)
        right = hidden_loss.reference_vae_loss(*inputs)[0]
        if abs(formula(terms) - right) <= 1e-4 * max(1.0, abs(right)):
            continue
        assert hidden_loss.diagnose_loss(formula(terms), terms) == message
        told += 1
    assert told >= 1, "no batch of the hidden test tells this slip from the right loss"
    right = hidden_loss.reference_vae_loss(*probe_inputs.loss_batches()[0])[0]
    assert (
        hidden_loss.diagnose_loss(right, hidden_loss.loss_terms(*probe_inputs.loss_batches()[0]))
        is None
    )


def test_canonical_form_costs_far_less_than_a_second(complete) -> None:
    """model_signature() of the master encoder + decoder; measured 6-33 ms on the loaded 2-core dev box."""
    import time

    from course.architecture import model_signature

    start = time.perf_counter()
    for _ in range(5):
        model_signature(complete["encoder"])
        model_signature(complete["decoder"])
    assert (time.perf_counter() - start) / 5 < 1.0
