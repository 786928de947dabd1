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
    custom = training_budget({"VAE_MODE": "grading", "VAE_EPOCHS": "3", "VAE_TRAIN_IMAGES": "500", "VAE_SEED": "0"})
    assert (custom.epochs, custom.train_images, custom.batch_size, custom.verbose) == (3, 500, GRADING.batch_size, 2)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VAE_MODE": "fast"}, r"VAE_MODE='fast' is not a known mode; use one of \['grading', 'student'\]"),
        ({"VAE_EPOCHS": "ten"}, r"VAE_EPOCHS='ten' is not a valid int"),
        ({"VAE_BATCH_SIZE": "0"}, "VAE_BATCH_SIZE must be positive, got 0"),
        ({"VAE_TRAIN_IMAGES": "70000"}, "cannot exceed the 60,000"),
        ({"VAE_VAL_IMAGES": "20000"}, "cannot exceed the 10,000"),
    ],
)
def test_bad_values_are_explained(env, message):
    with pytest.raises(ValueError, match=message):
        training_budget(env)
