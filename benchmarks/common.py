"""Helpers shared by the benchmark scripts."""
import platform


def cpu_name():
    """The CPU model as /proc/cpuinfo names it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# The instruction-set extensions that decide which kernels a library can run.
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16",
              "avx512_fp16", "amx_tile")


def cpu_flags():
    """Which of SIMD_FLAGS /proc/cpuinfo lists, space-separated."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return " ".join(f for f in SIMD_FLAGS if f in have) or "none of them"
    except OSError:
        pass
    return "unknown"


def _python(code, **env):
    import os
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, **env))
    return out.stdout


def ember_kernel():
    """The GEMM kernel ember picks on this machine."""
    return _python("import ember; print(ember.config.gemm_kernel())").strip() or "unknown"


def torch_isa():
    """The instruction set PyTorch's oneDNN runs a channels_last convolution with (its
    ONEDNN_VERBOSE banner), and ATen's own vector kernels' level."""
    code = ("import torch\n"
            "c = torch.nn.Conv2d(3, 32, 3).to(memory_format=torch.channels_last)\n"
            "x = torch.randn(64, 3, 32, 32).to(memory_format=torch.channels_last)\n"
            "with torch.inference_mode(): c(x)\n"
            "print('cpu capability:', torch.backends.cpu.get_cpu_capability())\n")
    parts = []
    for ln in _python(code, ONEDNN_VERBOSE="all").splitlines():
        if "isa:" in ln and not parts:
            parts.append("oneDNN " + ln.split("isa:", 1)[1].strip())
        elif ln.startswith("cpu capability:"):
            parts.append("ATen " + ln.split(":", 1)[1].strip())
    return "; ".join(parts) or "unknown"
