"""End to end: the shipped examples reach their stated accuracy with a fixed seed."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name, *args):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_digits_mlp_reaches_095():
    pytest.importorskip("sklearn")
    out = run_example("quickstart.py", "--verbose", "0")
    line = [l for l in out.splitlines() if l.startswith("test accuracy")][0]
    assert float(line.split()[2]) >= 0.95, out


def test_digits_cnn_reaches_097():
    pytest.importorskip("sklearn")
    out = run_example("digits_cnn.py", "--verbose", "0")
    line = [l for l in out.splitlines() if l.startswith("test accuracy")][0]
    assert float(line.split()[2]) >= 0.97, out
