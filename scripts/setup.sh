#!/usr/bin/env bash
# One-time, idempotent set-up behind `make demo` and `make test`:
#   1. bubblewrap, which the grading sandbox needs (Debian package; skipped when present);
#   2. a Python 3.11 virtual environment in .venv with the exact pins of requirements.txt;
#   3. the `course` package, installed editable so the notebooks and nbgrader import it;
#   4. the students' nbgrader configuration (student_config/), linked where nbgrader and JupyterLab
#      find it from any folder ($VENV/etc/jupyter, on `jupyter --paths`), and the instructor's tools
#      taken out of the students' JupyterLab;
#   5. chromium (Debian package), the browser the JupyterLab test drives through Playwright;
#   6. PostgreSQL's server (Debian package), which the gradebook tests start in a scratch folder.
# Make re-runs it only when requirements.txt or pyproject.toml change (stamp: .venv/.installed).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

step() { printf '\n==> %s\n' "$*"; }

APT_UPDATED=
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_install() {
    if [ -z "$APT_UPDATED" ]; then apt-get update -qq >/dev/null; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v bwrap >/dev/null 2>&1; then
    if can_apt; then
        step "installing bubblewrap (grading sandbox)"
        apt_install bubblewrap
    else
        echo "note: bubblewrap (bwrap) is not installed; autograding will refuse to run until it is" \
             "(Debian/Ubuntu: sudo apt-get install bubblewrap), or set VAE_SANDBOX=off to grade unconfined." >&2
    fi
fi

# The browser test (tests/test_browser.py) drives JupyterLab in Debian's chromium through
# Playwright; Playwright's own browser download is never used.
if [ ! -x /usr/bin/chromium ]; then
    if can_apt; then
        step "installing chromium (the JupyterLab browser test)"
        apt_install chromium
    else
        echo "note: /usr/bin/chromium is missing; the browser test is skipped until it is installed" \
             "(Debian/Ubuntu: sudo apt-get install chromium)." >&2
    fi
fi

# tests/test_postgres_gradebook.py starts a throwaway server from this package (initdb, pg_ctl);
# the package's own cluster service is never used by the course.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    if can_apt; then
        step "installing PostgreSQL's server (the gradebook tests)"
        apt_install postgresql
    else
        echo "note: PostgreSQL's server is missing; the PostgreSQL gradebook tests are skipped until" \
             "it is installed (Debian/Ubuntu: sudo apt-get install postgresql)." >&2
    fi
fi

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            PYTHON=$candidate; break
        fi
    done
fi
if [ -z "$PYTHON" ]; then
    echo "error: Python 3.11 is needed (the pins in requirements.txt are resolved for it); set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
fi
step "installing the pinned environment into $VENV (first time: ~2 min from a warm pip cache)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e . -e grader 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
# The students' nbgrader configuration (cell time limit for Validate, the course id for the
# exchange), linked so that edits to student_config/ reach the environment without a re-install.
mkdir -p "$VENV/etc/jupyter"
ln -sfn "$(pwd)/student_config/nbgrader_config.py" "$VENV/etc/jupyter/nbgrader_config.py"
# Students see only their own tools in JupyterLab's Nbgrader menu: the instructor's (Formgrader,
# Create Assignment, the course list) are disabled and locked for the environment with nbgrader's
# documented commands (.venv/etc/jupyter/labconfig/page_config.json, jupyter_server_config.d/). In a
# virtual environment these settings outrank ~/.jupyter, so the instructor turns the tools back on per
# session with JUPYTER_CONFIG_PATH=$PWD/student_config/instructor, which outranks both.
for plugin in formgrader create-assignment course-list; do
    "$VENV/bin/jupyter" labextension disable --level=sys_prefix "@jupyter/nbgrader:$plugin" >/dev/null 2>&1
    "$VENV/bin/jupyter" labextension lock --level=sys_prefix "@jupyter/nbgrader:$plugin" >/dev/null 2>&1
done
for extension in formgrader course_list; do
    "$VENV/bin/jupyter" server extension disable --sys-prefix "nbgrader.server_extensions.$extension" >/dev/null 2>&1
done
# matplotlib's font list, built once here: the grading sandbox lends it to every kernel read-only.
"$VENV/bin/python" -c "import matplotlib.font_manager"
touch "$VENV/.installed"
step "environment ready: $("$VENV/bin/python" -c 'import keras, nbgrader; print("keras", keras.__version__, "| nbgrader", nbgrader.__version__)' 2>/dev/null)"
