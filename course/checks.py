"""Assertion helpers for the notebook's visible and hidden tests.

A failed test is the main way a student learns what is wrong, so every helper raises an
``AssertionError`` whose text names the object in the student's terms, what was expected, what
was found, and where to look. These helpers know nothing about the solution: the expected values
live in the tests that call them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
import textwrap
from dataclasses import dataclass
from typing import Any

import numpy as np

from course.probing import ERRORS

Shape = Sequence[int | None]

MAX_QUOTED_ERROR = 300
"""Characters of a student's error message quoted in a failure (the probe records at most this many)."""
MAX_MESSAGE = 2000
"""Characters one failure message may have: the longest the checks write is under 600; a message that
quotes what the kernel stated (a type's name, say) could otherwise carry megabytes to the feedback page."""


MESSAGE_WIDTH = 108
"""Columns a self-check's verdict is wrapped to in the notebook. JupyterLab's Validate dialog does not
wrap what it shows and cuts a longer line at its edge; it holds 117 columns of its monospace font in a
1,024 and a 1,400 px wide window (tests/test_browser.py measures it). At 108, 19 of the 21 mistakes
tests/test_selfchecks.py catalogues read in at most 3 lines; part 8's two layout messages (330-360
characters) take 4."""


class SelfCheckFailed(AssertionError):
    """A visible self-check's verdict: the failures it found, each in plain words.

    In IPython (the notebook, nbgrader's Validate) it shows as its message alone, wrapped to
    ``MESSAGE_WIDTH``: the frames of the self-check's own machinery tell a student nothing, and they
    pushed the message below a screenful of traceback. IPython asks an exception for its traceback
    through ``_render_traceback_`` before formatting one (``InteractiveShell.showtraceback``, the
    protocol ipyparallel's remote errors use), so this needs no hook to install, does not depend on
    ``%xmode``, and leaves every other exception, the student's own errors included, with IPython's
    usual traceback. Outside IPython (pytest, the grader) it is an ordinary ``AssertionError``.
    """

    def __init__(self, message: str, part: int | None = None):
        super().__init__(message)
        self.part = part

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self), self.part)

    def lines(self, width: int = MESSAGE_WIDTH) -> list[str]:
        """The message as the notebook shows it: a heading, then each failure wrapped to ``width``
        in as few lines as that width allows, the lines evened out (no last line of one word)."""
        heading = f"Part {self.part} self-check failed:" if self.part else "Self-check failed:"
        failures = [line for line in str(self).splitlines() if line.strip()] or ["(no message)"]
        out: list[str] = []
        for index, failure in enumerate(failures):

            def wrap(columns: int, failure: str = failure, index: int = index) -> list[str]:
                return textwrap.wrap(
                    failure,
                    columns,
                    initial_indent=f"{heading} " if index == 0 else "",
                    break_long_words=False,
                    break_on_hyphens=False,
                )

            lines = wrap(width)
            for narrower in range(width - 1, width // 2, -1):
                if len(wrap(narrower)) > len(lines):
                    break
                lines = wrap(narrower)
            out += lines
        return out

    def _render_traceback_(self) -> list[str]:
        lines = self.lines()
        heading = lines[0].split(":", 1)[0] + ":"
        # Red like IPython's exception names, so the verdict reads as the cell's error.
        lines[0] = "\x1b[0;31m" + heading + "\x1b[0m" + lines[0][len(heading) :]
        return ["\n".join(lines)]


def expect(condition: bool, message: str) -> None:
    """``assert`` with a message that survives ``python -O`` and reads well in feedback."""
    if not condition:
        raise AssertionError(message)


def fmt_shape(shape: Iterable[int | None]) -> str:
    parts = ["None" if d is None else str(int(d)) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def expect_shape(what: str, actual: Shape, expected: Shape, hint: str = "") -> None:
    """E.g. "z_mean has shape (None, 3); expected (None, 2): check latent_dim"."""
    actual_t = tuple(None if d is None else int(d) for d in actual)
    expected_t = tuple(expected)
    expect(
        actual_t == expected_t,
        f"{what} has shape {fmt_shape(actual_t)}; expected {fmt_shape(expected_t)}"
        + (f": {hint}" if hint else ""),
    )


def expect_close(what: str, actual: Any, expected: Any, *, atol: float, hint: str = "") -> None:
    actual_a = np.asarray(actual, dtype=np.float64)
    expected_a = np.asarray(expected, dtype=np.float64)
    expect(
        actual_a.shape == expected_a.shape,
        f"{what} has shape {actual_a.shape}; expected {expected_a.shape}"
        + (f": {hint}" if hint else ""),
    )
    expect(
        bool(np.all(np.isfinite(actual_a))),
        f"{what} contains NaN or infinity" + (f": {hint}" if hint else ""),
    )
    worst = float(np.max(np.abs(actual_a - expected_a))) if actual_a.size else 0.0
    expect(
        worst <= atol,
        f"{what} is {_short(actual_a)}; expected {_short(expected_a)} (off by {worst:.3g}, tolerance {atol:g})"
        + (f": {hint}" if hint else ""),
    )


def not_filled_in(what: str) -> str:
    """The message for a step whose code still raises the release's NotImplementedError."""
    return f"{what}: this part is not filled in yet (it still raises NotImplementedError)."


def expect_raises_nothing(what: str, fn: Callable[[], Any], hint: str = "") -> Any:
    """Run ``fn`` and turn any exception into a readable failure instead of a bare traceback."""
    try:
        return fn()
    except NotImplementedError:
        raise AssertionError(not_filled_in(what)) from None
    except Exception as exc:  # the student's code may raise anything
        raise AssertionError(
            f"{what} raised {type(exc).__name__}: {_first_line(exc)}"
            + (f". {hint}" if hint else "")
        ) from exc


def expect_layers(what: str, model: Any, expected: Sequence[dict[str, Any]]) -> None:
    """Compare layer by layer and report the first difference in plain words."""
    from course.architecture import model_signature

    actual = model_signature(model)
    for index, (got, want) in enumerate(zip(actual, expected), start=1):
        for key, value in want.items():
            if got.get(key) != value:
                raise AssertionError(
                    f"{what}: layer {index} ({got['type']}) has {key}={got.get(key)!r}; expected {key}={value!r}"
                )
    expect(
        len(actual) == len(expected),
        f"{what} has {len(actual)} layers after the input; expected {len(expected)} "
        f"(found: {', '.join(s['type'] for s in actual)})",
    )


def expect_param_count(what: str, model: Any, expected: int) -> None:
    actual = int(model.count_params())
    expect(
        actual == expected,
        f"{what} has {actual:,} parameters; expected {expected:,}: compare its layers with the description",
    )


def _short(array: np.ndarray) -> str:
    if array.size <= 6:
        return np.array2string(array, precision=5, separator=", ")
    return f"array of shape {array.shape}, mean {float(np.mean(array)):.5g}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


# --- verdicts from probe data (see course.probing) ------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a test cell earned: points out of ``max_points`` and, per failed check, its message."""

    points: float
    max_points: float
    failures: tuple[str, ...]
    passed: tuple[str, ...] = ()

    @property
    def full(self) -> bool:
        return not self.failures


Check = tuple[float, str, Callable[[], None]]
"""(points, what it checks, a function that raises AssertionError with the student's message)."""


def _bounded(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def run_checks(checks: Sequence[Check]) -> Outcome:
    """Run every check (never stopping at the first failure) and add up the points of those that pass."""
    earned, failures, passed = 0.0, [], []
    for points, label, check in checks:
        try:
            check()
        except AssertionError as exc:
            message = _bounded(str(exc))
            if message not in failures:  # one cause (a missing function, say) is told once
                failures.append(message)
        except (
            Exception
        ) as exc:  # a check must never crash on odd data: that is a failure of the data
            failures.append(
                _bounded(
                    f"{label}: the grader could not read your result ({type(exc).__name__}: {_first_line(exc)})"
                )
            )
        else:
            earned += points
            passed.append(label)
    return Outcome(
        round(earned, 6), round(sum(p for p, _, _ in checks), 6), tuple(failures), tuple(passed)
    )


def expect_ran(data: dict[str, Any], what: str, hint: str = "") -> None:
    """Fail with the student's own error if the probe step ``what`` raised in their code."""
    error = data.get(ERRORS, {}).get(what)
    if error is None:
        return
    if error == "NotImplementedError":
        raise AssertionError(not_filled_in(what))
    # The kernel states this text: one line of it, cut to what a message needs, is quoted.
    text = str(error).strip().splitlines()[0][:MAX_QUOTED_ERROR] if str(error).strip() else "?"
    raise AssertionError(f"{what} raised {text}" + (f". {hint}" if hint else ""))
