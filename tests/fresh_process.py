"""Runs a script in a fresh interpreter (settings read once at load, such as
EMBER_GEMM_KERNEL and EMBER_VECTOR_ISA, need one) and returns the JSON it wrote to the
path given as its first argument."""
import json
import os
import subprocess
import sys


def json_from_fresh_process(script, path, **env):
    proc = subprocess.run([sys.executable, "-c", script, str(path)],
                          env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    with open(path) as f:
        return json.load(f)
