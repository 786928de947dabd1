"""Notes for the student travel in the notebook's metadata and end up as its first cell."""

from nbformat import v4

from vae_grader.notes import add_note, flags_of, notes_of, render_notes


def test_notes_are_rendered_once_at_the_top_and_flags_kept_per_cell():
    nb = v4.new_notebook(cells=[v4.new_code_cell("x = 1")])
    add_note(nb, "The cell <b>test_encoder</b> was restored.", cell="test_encoder")
    add_note(nb, "The cell <b>test_encoder</b> was restored.", cell="test_encoder")  # once only
    add_note(nb, "The test test_training could not be run.", cell="test_training", flag="timeout")
    render_notes(nb)
    top = nb.cells[0]
    assert top.cell_type == "markdown" and top.source.startswith("## Notes from the autograder")
    assert (
        top.source.count("- The cell btest_encoder/b was restored.") == 1
    )  # no HTML reaches the page
    assert "- The test test_training could not be run." in top.source
    assert len(notes_of(nb)) == 2 and flags_of(nb) == {"test_training": ["timeout"]}
    assert nb.cells[1].source == "x = 1"


def test_a_notebook_without_notes_is_left_alone():
    nb = v4.new_notebook(cells=[v4.new_code_cell("x = 1")])
    render_notes(nb)
    assert [c.source for c in nb.cells] == ["x = 1"]
