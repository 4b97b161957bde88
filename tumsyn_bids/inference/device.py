"""The one device resolver, and precision choices (torch is imported inside functions).

:func:`resolve_device` is used by inference, model loading and training alike; :func:`check_device`
and :func:`wants_gpu` let the runner decide before anything is written or CUDA is initialised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tumsyn_bids.errors import DeviceError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def resolve_device(device: "str | torch.device" = "auto") -> "torch.device":
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` -> torch.device.

    Raises DeviceError when CUDA is asked for but absent, UsageError for an unknown name.
    """
    import torch

    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} requested but CUDA is not available here "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); use --device cpu"
            )
        dev = torch.device(name)
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {name!r} requested but only {count} CUDA device(s) are visible")
        return dev
    raise UsageError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")


def check_device(device: str) -> None:
    """An explicitly requested CUDA device must exist (DeviceError, exit 70); ``auto``/``cpu`` need no check.

    Only ``cuda``/``cuda:N`` touch torch.cuda here (MultiProc workers start with forkserver, never fork).
    """
    if str(device).lower().startswith("cuda"):
        resolve_device(device)


def wants_gpu(device: str) -> bool:
    """Whether the synthesis nodes will use a GPU, decided without initialising CUDA here."""
    name = str(device).lower()
    if name.startswith("cuda"):
        return True
    if name != "auto":
        return False
    from nipype.utils.gpu_count import gpu_count

    return gpu_count() > 0


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX)."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def autocast_dtype(device: "torch.device", amp: bool) -> "torch.dtype | None":
    """The autocast dtype to use on ``device`` (None: run in float32).

    CUDA: bfloat16 where supported, else float16. CPU: bfloat16 only where the CPU has it natively.
    """
    import torch

    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return None
