"""The device module: the C allocator keeping freed memory for reuse, and the default precision."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import stylize.device
from stylize.cli import app

# Allocates and frees a 64 MB tensor (as a pass over a big image does) and counts the page
# faults of doing it again: each fault is a fresh page that the kernel had to zero and map.
_FAULTS = """
import resource, sys, torch
from stylize.device import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
total = 0
for i in range(12):
    before = faults()
    x, y = torch.ones(2**24), torch.ones(2**23 + 1000 * i)  # a layer's output and a gradient
    total += faults() - before if i else 0  # the first round maps memory either way
    del x, y
print(total)
"""


def _page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_reusing_freed_memory_avoids_page_faults():
    system, reused = _page_faults("system"), _page_faults("reuse")
    assert system > 11 * 20000  # glibc maps each block afresh: 24576 faults of 4 KiB pages a round
    # Reused: 33k-82k faults over the same rounds (3.3-8x fewer; the count varies between runs).
    assert reused < system / 2


def test_commands_set_up_the_allocator(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(stylize.device, "reuse_freed_memory", lambda: calls.append(1) or True)
    result = CliRunner().invoke(app, ["export", "no_such_model", "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2
    assert calls == [1]


def test_half_precision_is_on_by_default_only_where_bfloat16_is_native(monkeypatch):
    import torch

    from stylize.device import native_bfloat16, resolve_half

    cpu = torch.device("cpu")
    assert resolve_half(cpu, True) is True and resolve_half(cpu, False) is False  # --half / --no-half
    assert resolve_half(torch.device("cuda"), None) is False  # GPUs: float32 unless asked (not measured)
    assert resolve_half(torch.device("mps"), None) is False
    for avx512_bf16, amx, native in [(False, False, False), (True, False, True), (False, True, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert native_bfloat16(cpu) is native and resolve_half(cpu, None) is native
        assert resolve_half(cpu, False) is False


def test_info_says_whether_half_precision_is_the_default():
    import json

    import torch

    from stylize.device import resolve_half

    result = CliRunner().invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["half_by_default"] is resolve_half(torch.device("cpu"), None)
    text = CliRunner().invoke(app, ["info"]).stdout
    assert "half precision" in text and ("on by default" in text) is resolve_half(torch.device("cpu"), None)


def test_a_gpus_budget_counts_the_memory_torch_holds_free(monkeypatch):
    """torch reuses the blocks its caching allocator keeps: a batch's next photo may use them."""
    from stylize.device import memory_budget

    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (2 * gib, 16 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 5 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 1 * gib)
    assert memory_budget(torch.device("cuda")) == 6 * gib
