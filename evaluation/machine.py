"""What machine a figure was measured on, and how much memory the process peaked at."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path


def peak_rss_mb() -> float:
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


def machine() -> str:
    cpu = cpu_model()
    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{cpu}; {os.cpu_count()} CPUs; torch {torch.__version__} ({torch.get_num_threads()} threads); "
            f"Python {platform.python_version()}; {platform.system()} {platform.release()}; load avg at start {load}")
