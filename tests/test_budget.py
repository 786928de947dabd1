"""The training budget read from the environment."""

import pytest

from course.budget import GRADING, STUDENT, training_budget


def test_default_is_the_full_student_run():
    budget = training_budget({})
    assert budget == STUDENT
    assert (budget.epochs, budget.train_images, budget.val_images) == (10, 60000, 10000)
    assert budget.verbose == 1


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
