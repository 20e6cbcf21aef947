"""Choosing the compute device: CUDA first, then Apple MPS, then the CPU."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
from dataclasses import dataclass

import torch

from stylize.errors import DeviceError

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class DeviceInfo:
    """One device the tool can use."""

    spec: str  # what --device takes, e.g. "cuda:0"
    name: str
    memory_bytes: int | None


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N|mps`` into a torch device, checking that it is available."""
    spec = spec.strip().lower()
    if not _DEVICE_RE.match(spec):
        raise DeviceError(f"unknown device '{spec}'; use auto, cpu, cuda, cuda:N or mps")
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device '{spec}' requested but CUDA is not available here; use --device cpu or auto")
        device = torch.device(spec)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device '{spec}' does not exist: this machine has {count} CUDA device(s), "
                              f"cuda:0 to cuda:{count - 1}")
        return device
    if spec == "mps" and not _mps_available():
        raise DeviceError("device 'mps' requested but Apple MPS is not available here; use --device cpu or auto")
    return torch.device(spec)


def available_devices() -> list[DeviceInfo]:
    """Every device usable here, the CPU last."""
    devices: list[DeviceInfo] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(DeviceInfo(f"cuda:{index}", props.name, props.total_memory))
    if _mps_available():
        devices.append(DeviceInfo("mps", "Apple Metal (MPS)", None))
    devices.append(DeviceInfo("cpu", _cpu_name(), _system_memory()))
    return devices


def is_out_of_memory(exc: BaseException) -> bool:
    """An allocation failed: a GPU's (torch.OutOfMemoryError), Python's MemoryError, or the CPU
    allocator's, which torch raises as a plain RuntimeError ("DefaultCPUAllocator: can't
    allocate memory")."""
    out_of_memory = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), MemoryError)
    return isinstance(exc, out_of_memory) or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def memory_budget(device: torch.device) -> int | None:
    """Bytes that one computation may use on ``device`` now: the free GPU memory, or on the CPU
    the memory the system reports as available; None where it cannot be known.

    On CUDA the free memory includes what torch's caching allocator holds but no tensor uses:
    the device counts it as taken, yet torch reuses it. Without it, a batch's second photo was
    measured against the memory minus the first photo's cached blocks and could be refused at
    the size the first had just run at."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    if device.type == "mps":
        mps = getattr(torch, "mps", None)
        if mps is not None and hasattr(mps, "recommended_max_memory"):
            return int(mps.recommended_max_memory() - mps.current_allocated_memory())
        return None
    return _available_system_memory()


def gigabytes(size: int) -> str:
    """A memory size for a message: "3.4 GB" (GiB, as the tools that report memory count it)."""
    if size >= 2**50:  # what an absurd option asks for: its digits would say nothing more
        return "over a million GB"
    return f"{size / 2**30:.1f} GB"


def _available_system_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    total = _system_memory()  # elsewhere: assume half of it is free
    return None if total is None else total // 2


def _system_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on every platform
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "CPU"


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def reuse_freed_memory() -> bool:
    """Have the C allocator keep freed memory for reuse instead of handing it back to the
    system; returns whether it could (Linux with glibc only).

    glibc serves each block over 32 MB (at 512 px, VGG's first layers and their gradients) with
    a fresh mmap and unmaps it when freed, so every forward and backward pass page-faults its
    big tensors in again: zeroing and mapping them took about a tenth of an iteration or a
    training step on the CPU. From the heap, with trimming off, most come back already mapped:
    iterative runs 7-16 % faster (512-1024 px), training steps 20 % (benchmarks/RESULTS.md).
    The price is fragmentation: peak memory 4 % higher at 512 px, 19-32 % at 1024 px (2.8-3.0
    against 2.3-2.4 GiB, still under the 3.3 GiB of optimize.estimate_memory, which the fit
    check uses), and the process keeps its peak until it ends. Process-wide, so it is the command
    line's call, not the library's."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter already uses
    except (OSError, AttributeError):  # e.g. musl has no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def make_deterministic(device: torch.device) -> None:
    """Ask for deterministic kernels so the same inputs and seed give the same output."""
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def half_dtype(device: torch.device) -> torch.dtype:
    """The half-precision type for --half: bfloat16 where the device has it (float32's range, so
    no loss scaling), else float16 (older GPUs, MPS)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device.type == "mps" else torch.bfloat16


def native_bfloat16(device: torch.device) -> bool:
    """Whether bfloat16 arithmetic is native here: a CPU with AVX512-BF16 or AMX. There oneDNN's
    bfloat16 convolutions run about twice as fast as float32 (VGG-16 forward+backward at 512x384:
    0.55 against 1.10 s on a 2-core AMD EPYC; benchmarks/precision.py). Other CPUs emulate
    bfloat16 arithmetic (not measured here), so they keep float32 by default."""
    if device.type != "cpu":
        return False
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_half(device: torch.device, half: bool | None) -> bool:
    """--half / --no-half, or by default (None) mixed precision where bfloat16 is native and was
    measured to keep quality: CPUs with AVX512-BF16 or AMX. GPUs stay in float32 unless asked:
    on an H200 bfloat16 autocast was 4-11 % slower at stylize's sizes (benchmarks/precision.py),
    which leave the GPU waiting on kernel launches, and float32 convolutions use TF32 there."""
    return native_bfloat16(device) if half is None else half


def autocast(device: torch.device, half: bool) -> contextlib.AbstractContextManager:
    """Mixed precision for --half (convolutions and matrix products in half precision, the
    rest, e.g. normalisation statistics, in float32); a no-op without it."""
    if not half:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=half_dtype(device))
