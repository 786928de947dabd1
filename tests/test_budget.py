"""The training budget read from the environment."""

from dataclasses import replace

import pytest

from course.budget import GRADING, STUDENT, training_budget


def test_default_is_the_full_student_run():
    budget = training_budget({})
    assert budget == STUDENT
    assert (budget.train_images, budget.val_images) == (60000, 10000)
    assert budget.verbose == 1


def test_the_original_settings_are_one_environment_away():
    """The 2017 run (docs/instructor.md has the recipe): 10 epochs, batch 16, constant rate."""
    original = training_budget(
        {
            "VAE_EPOCHS": "10",
            "VAE_BATCH_SIZE": "16",
            "VAE_LEARNING_RATE": "1e-3",
            "VAE_SCHEDULE": "Constant",
            "VAE_WARMUP_EPOCHS": "0",
            "VAE_STEPS_PER_EXECUTION": "1",
        }
    )
    assert (original.epochs, original.batch_size, original.steps_per_execution) == (10, 16, 1)
    assert original.learning_rate_schedule() == 1e-3
    assert "Adam lr 0.001, validation" in original.describe()


def test_cosine_schedule_warms_up_then_decays_to_zero():
    budget = training_budget(
        {
            "VAE_SCHEDULE": "cosine",
            "VAE_WARMUP_EPOCHS": "0.5",
            "VAE_EPOCHS": "2",
            "VAE_BATCH_SIZE": "16",  # 7,500 steps: a warm-up of exactly 1,875
        }
    )
    schedule = budget.learning_rate_schedule()
    steps = budget.steps
    assert steps == 2 * 60000 // budget.batch_size
    warmup = steps // 4  # half of one of the two epochs
    rates = [
        float(schedule(step)) for step in (0, warmup // 2, warmup, (steps + warmup) // 2, steps)
    ]
    peak = budget.learning_rate
    assert rates[0] == 0.0
    assert abs(rates[1] - peak / 2) < 1e-3 * peak  # linear warm-up
    assert abs(rates[2] - peak) < 1e-6 * peak  # the peak at the end of the warm-up
    assert (
        abs(rates[3] - peak / 2) < 1e-3 * peak
    )  # cosine: half way down at the middle of the decay
    assert rates[4] < 1e-6 * peak  # and zero at the end of the run
    assert "cosine decay" in budget.describe()


def test_grading_mode_and_overrides():
    assert training_budget({"VAE_MODE": "grading"}) == GRADING
    assert training_budget({"VAE_MODE": "Grading "}).mode == "grading"
    custom = training_budget(
        {"VAE_MODE": "grading", "VAE_EPOCHS": "3", "VAE_TRAIN_IMAGES": "500", "VAE_SEED": "0"}
    )
    assert (custom.epochs, custom.train_images, custom.batch_size, custom.verbose) == (
        3,
        500,
        GRADING.batch_size,
        2,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"VAE_MODE": "fast"},
            r"VAE_MODE='fast' is not a known mode; use one of \['grading', 'student'\]",
        ),
        ({"VAE_EPOCHS": "ten"}, r"VAE_EPOCHS='ten' is not a valid int"),
        ({"VAE_BATCH_SIZE": "0"}, "VAE_BATCH_SIZE must be positive, got 0"),
        ({"VAE_TRAIN_IMAGES": "70000"}, "cannot exceed the 60,000"),
        ({"VAE_VAL_IMAGES": "20000"}, "cannot exceed the 10,000"),
        ({"VAE_SCHEDULE": "linear"}, r"VAE_SCHEDULE='linear' is not a known schedule"),
        ({"VAE_STEPS_PER_EXECUTION": "0"}, "VAE_STEPS_PER_EXECUTION must be positive, got 0"),
        ({"VAE_WARMUP_EPOCHS": "-1"}, "VAE_WARMUP_EPOCHS must not be negative, got -1"),
    ],
)
def test_bad_values_are_explained(env, message):
    with pytest.raises(ValueError, match=message):
        training_budget(env)


@pytest.mark.parametrize("execution", ["validate", "autograde"])
def test_nbgrader_execution_picks_the_grading_run(execution):
    """The Validate button and `nbgrader validate` need no flag: nbgrader's own variable is enough."""
    budget = training_budget({"NBGRADER_EXECUTION": execution})
    assert budget == GRADING
    assert budget.verbose == 2  # one line per epoch, not a progress bar, in validated/graded output


def test_vae_mode_overrides_nbgrader_execution():
    assert training_budget({"NBGRADER_EXECUTION": "validate", "VAE_MODE": "student"}) == STUDENT
    assert training_budget({"NBGRADER_EXECUTION": " ", "VAE_MODE": ""}) == STUDENT
    assert training_budget({"NBGRADER_EXECUTION": "validate", "VAE_EPOCHS": "2"}).epochs == 2


def test_nbgrader_sets_the_variable_it_is_keyed_on():
    """Guards the coupling with nbgrader: its validator and autograder still set NBGRADER_EXECUTION."""
    import inspect

    from nbgrader import validator
    from nbgrader.converters import autograde

    assert "NBGRADER_EXECUTION='validate'" in inspect.getsource(validator)
    assert "NBGRADER_EXECUTION='autograde'" in inspect.getsource(autograde)


def test_the_study_trains_what_the_notebook_trains():
    """`python -m measure.study side-by-side` measures the student default through the same object."""
    from dataclasses import replace

    from measure.study import CONFIGS, ORIGINAL, Config

    assert Config.of("new default", STUDENT).budget() == STUDENT
    # the default is the configuration the study measured side by side (README), not a neighbour of it
    assert Config.of("x", STUDENT) == replace(CONFIGS["b32-cos-6ep-lr4e-3"], name="x")
    assert ORIGINAL.budget().learning_rate_schedule() == 1e-3  # the 2017 settings: constant rate
    assert (ORIGINAL.batch_size, ORIGINAL.epochs, ORIGINAL.steps_per_execution) == (16, 10, 1)


def test_steps_per_execution_changes_no_number_of_the_training():
    """Both budgets run several steps per call only to save time: the master VAE (its Sampling layer
    draws from a SeedGenerator) must end with the weights of one step per call, a partial last
    execution included (10 steps, 4 per execution)."""
    import keras
    import numpy as np

    from measure.benchmark import master_namespace

    ns = master_namespace()
    x = np.random.default_rng(0).uniform(0, 1, (160, 28, 28, 1)).astype("float32")

    def trained(steps_per_execution: int, epochs: int = 1) -> list[np.ndarray]:
        keras.utils.set_random_seed(0)
        encoder = ns["build_encoder"]()
        decoder = ns["build_decoder"](2, ns["shape_before_flattening"](encoder))
        vae = ns["build_vae"](encoder, decoder, seed=0, steps_per_execution=steps_per_execution)
        if epochs:
            vae.fit(x, None, batch_size=16, epochs=epochs, shuffle=True, verbose=0)
        return vae.get_weights()

    untrained, one, several = trained(1, epochs=0), trained(1), trained(4)
    assert not all(np.allclose(a, b) for a, b in zip(untrained, one, strict=True))
    for a, b in zip(one, several, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert STUDENT.steps_per_execution > 1 and GRADING.steps_per_execution > 1
    assert (GRADING.batch_size, GRADING.learning_rate, GRADING.schedule) == (16, 1e-3, "constant")


def test_the_set_up_line_names_the_run_by_its_amount():
    """The notebook's set-up cell prints this; a different seed is still the same amount of training."""
    assert STUDENT.headline() == "full run: 6 epochs × 60,000 images"
    assert GRADING.headline() == "short run: 1 epoch × 8,000 images"
    assert training_budget({"VAE_SEED": "2"}).headline() == STUDENT.headline()
    assert training_budget({"VAE_EPOCHS": "2"}).headline() == "custom run: 2 epochs × 60,000 images"


@pytest.mark.parametrize("mode", ["grading", "student"])
def test_the_pytorch_backend_trains_one_step_per_execution(mode):
    on_torch = training_budget({"VAE_MODE": mode, "KERAS_BACKEND": "torch"})
    on_tensorflow = training_budget({"VAE_MODE": mode})
    assert on_torch.steps_per_execution == 1 < on_tensorflow.steps_per_execution
    assert replace(on_torch, steps_per_execution=on_tensorflow.steps_per_execution) == on_tensorflow
    assert on_torch.headline() == on_tensorflow.headline()
    with pytest.raises(ValueError, match="must be 1 on the PyTorch backend"):
        training_budget(
            {"VAE_MODE": mode, "KERAS_BACKEND": "torch", "VAE_STEPS_PER_EXECUTION": "8"}
        )
