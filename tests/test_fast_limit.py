"""The fast loop's guard (``--fast-limit``, in conftest): a fast test over the limit fails, a slow one does not."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

INNER = '''
import time
import pytest

def test_quick():
    assert True

def test_sleeps():
    time.sleep(0.5)

@pytest.mark.slow
def test_sleeps_but_is_slow():
    time.sleep(0.5)
'''


def _pytest(tmp_path, *args):
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path), *args], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})


def test_a_fast_test_over_the_limit_fails_and_names_the_fix(tmp_path):
    proc = _pytest(tmp_path, "--fast-limit", "0.2")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "1 failed, 2 passed" in proc.stdout
    assert "test_sleeps took" in proc.stdout and "over --fast-limit 0.2 s" in proc.stdout
    assert "mark it @pytest.mark.slow" in proc.stdout


def test_without_the_option_no_test_is_timed(tmp_path):
    proc = _pytest(tmp_path)
    assert proc.returncode == 0 and "3 passed" in proc.stdout, proc.stdout[-2000:]
