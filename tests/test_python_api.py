"""The README's Python example runs as written, at smaller sizes."""

from __future__ import annotations

import re
import subprocess
import sys

from PIL import Image

from conftest import REPO


def test_the_readmes_python_example_runs(tmp_path):
    block = re.search(r"## From Python.*?```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert block, "the README's Python example is missing"
    code = block.group(1)
    # Only the sizes are made smaller, to keep the suite fast; paths are the README's, relative to the repository.
    small = code.replace("size=256", "size=48").replace("size=512", "size=64")
    assert small.count("size=") == code.count("size=") == 2
    script = tmp_path / "example.py"
    script.write_text(f"import os\nos.chdir({str(tmp_path)!r})\n"
                      + small.replace('"samples/', f'"{REPO}/samples/'))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    progress = done.stdout.split("\n")
    assert progress[0].startswith("0 1 ") and float(progress[0].split()[2]) > 0  # the callback saw iterations
    with Image.open(tmp_path / "chelsea_gatys.png") as gatys, Image.open(tmp_path / "chelsea_starry.png") as fast:
        assert gatys.size == (48, 32) and fast.size == (64, 43)
