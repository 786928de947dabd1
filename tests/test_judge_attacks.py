"""Grades nobody can forge. Attacks on the judge (verdicts computed outside the student's kernel).

Two halves:

* **Fast unit tests of the judge** (seconds, no grading): what ``judge.answer`` makes of no answer,
  two answers, garbage; that a pickle-bearing archive and a ``.keras`` file with a Lambda layer, an
  unregistered custom layer or a config that names a Python builtin are refused; and, marked
  ``xfail(strict=True)``, the forgeries that the verdicts still accept (probe data fabricated with
  NumPy instead of computed by the student's code). Each of those xfails is a known weakness,
  reported to the lead; when a verdict is hardened the xfail turns into a failure ("XPASS(strict)"),
  and the marker must go.
* **Checks of the graded corpus** (``graded_course``, the session's one grading run; slow): the
  interpreter-dump submission (files, environment, history, modules, globals, encoded every way)
  leaks no hidden-test line and no hidden verdict's expected value, sees only allowlisted paths
  and variables; feedback pages carry no student script or event handler; the crash loop stays in
  its time budget; the disk filler wrote nothing to the grader's disk.

The check functions take a course folder and a student, so they can also be run on a scratch
grading of only the judge attack cases (see ``check_case`` at the end).
"""

from __future__ import annotations

import base64
import binascii
import html
import io
import json
import os
import re
import zipfile
import zlib
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pytest

from course import model_file, probing
from course.selfcheck.probe import load_saved
from vae_grader.judge import hidden
from vae_grader.judge import rulings as judge
from vae_grader.paths import MASTER
from vae_grader.sandbox.environment import ENV_NAMES, ENV_PREFIXES
from vae_samples import adversarial

# --- what must never reach a student ------------------------------------------------------------------


def hidden_region_lines() -> list[str]:
    """Every non-blank line between ### BEGIN HIDDEN TESTS and ### END HIDDEN TESTS in the master."""
    lines: list[str] = []
    for cell in nbformat.read(MASTER, as_version=4).cells:
        inside = False
        for line in cell.source.splitlines():
            if line.strip() == "### BEGIN HIDDEN TESTS":
                inside = True
            elif line.strip() == "### END HIDDEN TESTS":
                inside = False
            elif inside and line.strip():
                lines.append(line.strip())
    return sorted(set(lines))


HIDDEN_VERDICT_SECRETS = (
    # Expected values and names that exist only in grader/vae_grader/judge/hidden/ (the verdicts), as their
    # sources spell them. Not "494,244" or "56,385": a correct notebook prints its own parameter counts that way
    # (the encoder and decoder cells do), and a failing one is told the expected count by design.
    "494_244",
    "56_385",
    "RATIO_THRESHOLD",
    "ENCODER_LAYERS",
    "DECODER_LAYERS",
    "reference_vae_loss",
    "report.ratio < ",
    "expect_param_count(",
)
KERNEL_SET_VARIABLES = frozenset(
    {
        # Set inside the kernel process by ipykernel (TERM, CLICOLOR, FORCE_COLOR, CLICOLOR_FORCE, PAGER, GIT_PAGER,
        # PYDEVD_USE_FRAME_EVAL) and by importing TensorFlow / h5py (TF2_BEHAVIOR, TPU_ML_PLATFORM*,
        # ENABLE_RUNTIME_UPTIME_TELEMETRY, HDF5_PLUGIN_PATH), and by JAX, which Keras imports wherever it is installed
        # (TPU_SKIP_MDS_QUERY, set when no TPU is found): measured in the interpreter_dump case, not lent by the host.
        "TERM",
        "CLICOLOR",
        "FORCE_COLOR",
        "CLICOLOR_FORCE",
        "PAGER",
        "GIT_PAGER",
        "PYDEVD_USE_FRAME_EVAL",
        "TF2_BEHAVIOR",
        "TPU_ML_PLATFORM",
        "TPU_ML_PLATFORM_VERSION",
        "ENABLE_RUNTIME_UPTIME_TELEMETRY",
        "HDF5_PLUGIN_PATH",
        "TPU_SKIP_MDS_QUERY",
    }
)


def test_hidden_secrets_are_what_the_grader_holds():
    """The search list is real: every hidden line is in the master, every verdict secret in vae_grader.judge.hidden."""
    lines = hidden_region_lines()
    assert len(lines) >= 8 and any("check_here" in line for line in lines), lines
    # vae_grader.judge.hidden is a package (one module per part): read all of its modules.
    modules = sorted(Path(hidden.__file__).parent.glob("*.py"))
    assert Path(hidden.__file__) in modules and len(modules) > 1, modules
    source = "\n".join(module.read_text() for module in modules)
    for secret in HIDDEN_VERDICT_SECRETS:
        assert secret in source, secret


_BASE64 = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){20,}")


def decoded_views(text: str, depth: int = 3) -> list[str]:
    """``text`` and every base64, zlib and hex blob found in it, decoded (recursively, ``depth`` levels).

    Quotes escaped by JSON or repr (``\\"``, ``\\'``) are unescaped too: the master's hidden lines hold
    double-quoted strings, and an attacker's ``json.dumps(In)`` escapes them."""
    unescaped = text.replace('\\"', '"').replace("\\'", "'")
    views = [text] if unescaped == text else [text, unescaped]
    if depth == 0:
        return views
    for match in _BASE64.findall(text):
        try:
            raw = base64.b64decode(match + "=" * (-len(match) % 4))
        except (binascii.Error, ValueError):
            continue
        views += [
            v
            for blob in _inflated(raw)
            for v in decoded_views(blob.decode("utf-8", "replace"), depth - 1)
        ]
    for match in _HEX.findall(text):
        try:
            raw = bytes.fromhex(match)
        except ValueError:
            continue
        views += [
            v
            for blob in _inflated(raw)
            for v in decoded_views(blob.decode("utf-8", "replace"), depth - 1)
        ]
    return views


def _inflated(raw: bytes) -> list[bytes]:
    out = [raw]
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS, zlib.MAX_WBITS | 16):
        try:
            out.append(zlib.decompress(raw, wbits))
        except zlib.error:
            pass
    return out


def leaked_secrets(text: str) -> list[str]:
    """The hidden lines and verdict secrets found in ``text`` or in any blob decoded from it."""
    views = decoded_views(text)
    wanted = [*hidden_region_lines(), *HIDDEN_VERDICT_SECRETS]
    return sorted({secret for secret in wanted for view in views if secret in view})


def test_decoded_views_find_what_an_attacker_encodes():
    """The search can fail: a hidden line hidden in base64(zlib(...)) and in hex is found."""
    line = hidden_region_lines()[0]
    packed = base64.b64encode(zlib.compress(json.dumps({"In": [line]}).encode())).decode()
    assert leaked_secrets(f"STATE:{packed}") == [line]
    assert leaked_secrets("x" + json.dumps([line]).encode().hex() + "y") == [line]
    assert '"' in line, "the case below needs a hidden line with a quote in it"
    assert leaked_secrets(json.dumps({"In": [line]})) == [line]
    assert leaked_secrets("nothing here but 0.91 and 494,243") == []


# --- (b) the judge, unit by unit -------------------------------------------------------------------------


def _blob_output(text) -> dict:
    return nbformat.from_dict(
        {"output_type": "display_data", "metadata": {}, "data": {probing.MIME: text}}
    )


def _packed(data: dict) -> str:
    return base64.b64encode(probing.pack(data)).decode("ascii")


def test_answer_with_no_output_is_no_answer():
    data, why = judge.answer([])
    assert data is None and "no answer" in why


def test_answer_given_twice_is_not_used():
    blob = _blob_output(_packed({"x": np.ones(2)}))
    data, why = judge.answer([blob, blob])
    assert data is None and "more than once" in why


@pytest.mark.parametrize(
    "garbage", ["!!! not base64 !!!", 42, ["a"], base64.b64encode(b"\x93NUMPY garbage").decode()]
)
def test_garbage_answer_is_unreadable(garbage):
    data, why = judge.answer([_blob_output(garbage)])
    assert data is None and "not readable" in why


def test_answer_that_looks_like_a_zip_is_unreadable():
    data, why = judge.answer([_blob_output(base64.b64encode(b"PK\x03\x04 not an npz").decode())])
    assert data is None and "not readable" in why


def test_compressed_answer_cannot_inflate_the_grader():
    buffer = io.BytesIO()
    np.savez_compressed(buffer, z=np.zeros(50_000_000, dtype=np.float32))  # 200 MB of data
    blob = buffer.getvalue()
    assert len(blob) < 1_000_000  # measured: ~195 kB, a ratio of ~1,000
    with pytest.raises(ValueError):
        probing.unpack(blob)


def test_oversized_answer_is_not_read():
    data, why = judge.answer([_blob_output("A" * (judge.MAX_PROBE_BYTES + 4))])
    assert data is None and "too large" in why


def test_error_instead_of_answer_is_named():
    error = nbformat.from_dict(
        {"output_type": "error", "ename": "ImportError", "evalue": "no course", "traceback": []}
    )
    data, why = judge.answer([error])
    assert data is None and "ImportError: no course" in why


def test_answer_round_trip():
    data, why = judge.answer(
        [_blob_output(_packed({"z": np.arange(3.0), "h.json": {"loss": [1.0]}}))]
    )
    assert (
        why is None
        and data["h.json"] == {"loss": [1.0]}
        and np.array_equal(data["z"], np.arange(3.0))
    )


def test_pickle_bearing_archive_is_refused():
    """An npz whose array is pickled Python objects (np.savez pickles object arrays) never unpickles."""
    buffer = io.BytesIO()
    np.savez(buffer, evil=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError):
        probing.unpack(buffer.getvalue())
    data, why = judge.answer([_blob_output(base64.b64encode(buffer.getvalue()).decode())])
    assert data is None and "not readable (ValueError)" in why


def _load_refused(blob: bytes) -> str:
    """The one-line failure load_saved gives for a model blob (it must refuse)."""
    with pytest.raises(AssertionError) as caught:
        load_saved({probing.ERRORS: {}, "m.keras": blob}, "m", "build_encoder(2)")
    return str(caught.value)


def test_lambda_layer_model_is_refused():
    import keras

    image = keras.Input(shape=(28, 28, 1))
    flat = keras.layers.Lambda(lambda x: keras.ops.reshape(x, (-1, 784)))(image)
    blob = model_file.model_bytes(keras.Model(image, [flat, flat]))
    with pytest.raises(Exception):
        model_file.load_model(blob)
    assert "built-in layers and activations only" in _load_refused(blob)


def test_unregistered_custom_layer_is_refused():
    """A layer class registered in the student's kernel is not known to the grader: the model does not load."""
    import keras

    @keras.saving.register_keras_serializable(package="student_attack")
    class Anything(keras.layers.Layer):
        def call(self, x):
            return x

    image = keras.Input(shape=(28, 28, 1))
    blob = model_file.model_bytes(keras.Model(image, Anything()(image)))
    keras.saving.get_custom_objects().pop("student_attack>Anything")
    assert "built-in layers and activations only" in _load_refused(blob)


def test_keras_file_naming_a_python_builtin_is_refused(tmp_path):
    """A hand-made .keras whose config asks for builtins.exec runs nothing in the grader."""
    marker = tmp_path / "pwned"
    config = {
        "module": "builtins",
        "class_name": "exec",
        "registered_name": None,
        "config": f"open({str(marker)!r}, 'w').write('x')",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "metadata.json", json.dumps({"keras_version": "3.15.1", "date_saved": "2025-01-01"})
        )
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", b"")
    with pytest.raises(Exception):
        model_file.load_model(buffer.getvalue())
    assert not marker.exists()
    assert "built-in layers and activations only" in _load_refused(buffer.getvalue())


# --- forgeries the verdicts accept (known weaknesses: strict xfail, see the module docstring) ----------

_RNG = np.random.default_rng(0)


def _budget_epochs() -> int:
    import course

    return course.training_budget().epochs


def _forged(name: str) -> dict:
    """The fabricated probe data of adversarial.FORGE_PROBES, made here the way that cell makes it."""
    namespace: dict = {}
    exec(
        adversarial.FORGE_PROBES.replace("_selfcheck.run_probe = _forged_run_probe", ""), namespace
    )  # noqa: S102
    return probing.unpack(probing.pack(namespace["FORGERIES"][name]()))


FORGERIES = [
    pytest.param("probe_sampling", "test_sampling", False, id="sampling"),
    pytest.param("probe_sampling_hidden", "test_sampling_hidden", True, id="sampling_hidden"),
    pytest.param("probe_vae_model", "test_vae_model", False, id="vae_model"),
    pytest.param("probe_vae_model_hidden", "test_vae_model_hidden", True, id="vae_model_hidden"),
    pytest.param("probe_training", "test_training", False, id="training"),
    pytest.param("probe_manifold", "test_manifold", False, id="manifold"),
]


@pytest.mark.parametrize("probe_name, grade_id, is_hidden", FORGERIES)
def test_fabricated_probe_data_earns_nothing(probe_name, grade_id, is_hidden):
    """Data made up in advance: models are required where the grader can run them itself, the wiring is read from
    the model's own serialised graph, and the sampler's and loss layer's inputs are drawn afresh by the grader for
    every probe (judge.new_salt), so numbers prepared for other inputs fit nothing."""
    test = judge.judged(grade_id)
    assert test is not None and test.hidden == is_hidden
    outcome = judge.verdict(test, _forged(probe_name), judge.new_salt())
    assert outcome.points == 0, (
        f"{grade_id}: fabricated data earned {outcome.points} of {outcome.max_points}"
    )


def test_identity_autoencoder_earns_nothing_for_training():
    import keras

    image = keras.Input(shape=(28, 28, 1))
    encoder = keras.Model(image, [keras.layers.Flatten()(image), keras.layers.Flatten()(image)])
    code = keras.Input(shape=(784,))
    decoder = keras.Model(code, keras.layers.Reshape((28, 28, 1))(code))
    data = probing.unpack(
        probing.pack(
            {
                probing.ERRORS: {},
                "encoder.keras": model_file.model_bytes(encoder),
                "decoder.keras": model_file.model_bytes(decoder),
            }
        )
    )
    outcome = hidden.judge("test_training_hidden", data)
    assert outcome.points == 0, (
        f"an untrained identity map earned {outcome.points} of {outcome.max_points}"
    )


def test_forgery_data_is_well_formed():
    """The fabricated data itself is what the visible probes would hand over (so the xfails above test the verdicts)."""
    assert _forged("probe_training")["history.json"]["val_loss"] == [0.25] * _budget_epochs()
    assert _forged("probe_manifold")["manifold"].shape == (420, 420)


# --- (a) the graded corpus: nothing secret, nothing outside the allowlist -----------------------------------


def autograded_text(root: Path, student: str) -> str:
    """Everything the student's code produced in the autograded notebook: every cell's outputs, and the notes.

    Not the cell sources: nbgrader keeps the hidden test cells' source in the autograded notebook (it is the
    instructor's copy; generate_feedback removes them from the student's page, which is checked in full).
    """
    path = root / "autograded" / student / "vae" / "vae.ipynb"
    if not path.is_file():
        return ""
    nb = nbformat.read(path, as_version=4)
    parts = [json.dumps(cell.get("outputs", []), ensure_ascii=False) for cell in nb.cells]
    parts += [
        cell.source
        for cell in nb.cells
        if cell.cell_type == "markdown" and "Notes from the autograder" in cell.source
    ]
    return "\n".join(parts)


def feedback_html(root: Path, student: str) -> str:
    path = root / "feedback" / student / "vae" / "vae.html"
    return path.read_text(errors="replace") if path.is_file() else ""


def _printed_lines(root: Path, student: str, prefix: str) -> list[str]:
    path = root / "autograded" / student / "vae" / "vae.ipynb"
    nb = nbformat.read(path, as_version=4)
    return [
        line
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        for line in "".join(output.get("text", "")).splitlines()
        if line.startswith(prefix)
    ]


def _allowed_env(name: str) -> bool:
    return name in ENV_NAMES or name.startswith(ENV_PREFIXES)


def interpreter_dump_problems(root: Path, student: str = "interpreter_dump") -> list[str]:
    """What the dump submission got that it must not: secrets (in any encoding), paths, variables."""
    problems: list[str] = []
    for where, text in (
        ("autograded notebook", autograded_text(root, student)),
        ("feedback page", feedback_html(root, student)),
    ):
        if not text:
            problems.append(f"no {where}")
            continue
        problems += [
            f"{where} contains {secret!r}" for secret in leaked_secrets(html.unescape(text))
        ]
    lines = _printed_lines(root, student, "STATE-B64-ZLIB:")
    if not lines:
        return problems + ["the dump did not run"]
    state = json.loads(zlib.decompress(base64.b64decode(lines[0].split(":", 1)[1])))
    problems += [
        f"environment variable {name} is not allowlisted"
        for name in state["environ"]
        if not _allowed_env(name) and name not in KERNEL_SET_VARIABLES
    ]
    if not state["seen_sources"] or not any(
        "grader probe" in source for source in state["seen_sources"]
    ):
        problems.append("the recording transformer saw no probe (the dump would prove nothing)")
    import course

    allowed_roots = [
        "/usr",
        "/bin",
        "/sbin",
        "/lib",
        "/lib64",
        "/etc",
        "/dev",
        "/proc",
        "/tmp",
        state["cwd"],
        os.path.dirname(course.__file__),
        state["environ"].get("MNIST_NPZ", "/nonexistent"),
        os.path.realpath(state["environ"].get("MNIST_NPZ", "/nonexistent")),  # lent at both
    ]
    import sys

    allowed_roots += [
        sys.prefix,
        sys.base_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
    ]
    parents = {str(Path(p)) for r in allowed_roots for p in [r, *map(str, Path(r).parents)]}
    for path in state["files"] + state["folders"]:
        if path in parents:
            continue
        if not any(path == r or path.startswith(r.rstrip("/") + "/") for r in allowed_roots):
            problems.append(f"the kernel can see {path}")
    etc = {p for p in state["files"] if p.startswith("/etc/")}
    extra_etc = etc - {
        "/etc/ld.so.cache",
        "/etc/localtime",
        "/etc/passwd",
        "/etc/group",
        "/etc/nsswitch.conf",
        "/etc/hosts",
    }
    problems += [f"the kernel can see {p}" for p in sorted(extra_etc)]
    return problems[:40]


class _ActiveContent(HTMLParser):
    """Script bodies, event-handler attributes and javascript: URLs in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self._in_script = tag == "script"
        for name, value in attrs:
            if name.lower().startswith("on") and value:
                self.found.append(f"<{tag} {name}={value[:60]}>")
            if (
                name.lower() in ("href", "src", "action", "data")
                and value
                and value.strip().lower().startswith("javascript:")
            ):
                self.found.append(f"<{tag} {name}={value[:60]}>")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and "VAEPWN" in data:
            self.found.append(f"<script>{data.strip()[:60]}")


def active_student_content(page: str) -> list[str]:
    """Student-made active content in a feedback page (nbconvert's own template scripts are not the student's)."""
    parser = _ActiveContent()
    parser.feed(page)
    return [
        item
        for item in parser.found
        if "VAEPWN" in item or "javascript:" in item.lower() or " on" in item
    ]


def feedback_problems(root: Path, student: str) -> list[str]:
    """Secrets or student scripts in the feedback page of any judge attack case."""
    page = feedback_html(root, student)
    if not page:
        return [f"{student}: no feedback page"]
    problems = [f"{student}: feedback contains {s!r}" for s in leaked_secrets(html.unescape(page))]
    problems += [
        f"{student}: feedback has active content {a}" for a in active_student_content(page)
    ]
    if "SHADOW-COURSE-LOADED" in page:
        problems.append(
            f"{student}: the kernel imported the course.py submitted beside the notebook"
        )
    if re.search(r"ESCAPE-[\w.-]+: SUCCEEDED", page):
        problems.append(
            f"{student}: an escape succeeded: {re.findall(r'ESCAPE-[^<]*SUCCEEDED[^<]*', page)[:3]}"
        )
    return problems


def disk_problems(root: Path, student: str = "disk_filler") -> list[str]:
    lines = _printed_lines(root, student, "DISK-")
    if len(lines) < 4:
        return [f"the disk filler printed {lines}"]
    problems = []
    for line in lines:
        megabytes = int(re.search(r"wrote (\d+) MB", line).group(1))
        if line.startswith("DISK-runtime") and megabytes:
            problems.append(f"wrote into the grader's runtime folder: {line}")
        if megabytes > 512:
            problems.append(f"beyond the 512 MiB scratch limit: {line}")
    return problems


def check_case(root: Path, student: str) -> list[str]:
    """Every graded-corpus check that applies to ``student`` (used by the tests and by hand on a scratch run)."""
    problems = feedback_problems(root, student)
    if student == "interpreter_dump":
        problems += interpreter_dump_problems(root, student)
    if student == "disk_filler":
        problems += disk_problems(root, student)
    return problems


JUDGE_CASES = [s.student for s in adversarial.JUDGE_ATTACKS]


def test_judge_attack_cases_cover_the_issue():
    assert len(JUDGE_CASES) >= 12 and len(set(JUDGE_CASES)) == len(JUDGE_CASES)
    for student in adversarial.NO_CODE_ATTACKS:
        submission = next(s for s in adversarial.JUDGE_ATTACKS if s.student == student)
        assert sum(submission.expected.values()) == 0, (
            f"{student} has no solution code, yet expects points"
        )


@pytest.mark.slow
@pytest.mark.parametrize("student", JUDGE_CASES)
def test_nothing_secret_or_active_in_feedback(graded_course, student):
    problems = check_case(graded_course.run.course_root, student)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_interpreter_dump_leaks_nothing(graded_course):
    problems = interpreter_dump_problems(graded_course.run.course_root)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_crash_loop_stays_in_budget(graded_course):
    """Eight kernel deaths: the replays stop at max_restarts and the whole submission within its time budget."""
    from vae_grader.preprocessors.execute import RobustExecute

    result = graded_course.run.results["repeated_crashes"]
    budget = RobustExecute.submission_seconds.default_value
    # nbgrader's own start-up and the feedback steps come on top of the executor's budget: 120 s (measured ~20 s).
    assert result.autograde_seconds < budget + 120, (
        f"{result.autograde_seconds:.0f} s for a crash loop"
    )


@pytest.mark.slow
def test_no_code_attacks_score_zero(graded_course):
    wrong = {
        s: graded_course.run.results[s].total
        for s in adversarial.NO_CODE_ATTACKS
        if graded_course.run.results[s].total
    }
    assert not wrong, f"attacks without solution code scored points: {wrong}"


if (
    __name__ == "__main__"
):  # python tests/test_judge_attacks.py COURSE_ROOT [student ...]: check a scratch grading
    import sys

    course_root = Path(sys.argv[1])
    for name in sys.argv[2:] or JUDGE_CASES:
        if (course_root / "autograded" / name).exists():
            found = check_case(course_root, name)
            print(f"{name}: {'ok' if not found else ''}" + "".join(f"\n  - {p}" for p in found))
