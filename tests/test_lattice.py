"""The grid measures: a faint regular grid stands out, a photo does not."""

import math

import pytest
import torch
from torchvision.transforms.functional import pil_to_tensor

from stylize.lattice import lattice_amplitude, lattice_power

from conftest import scene


def test_lattice_power_finds_a_grid_and_not_a_photo():
    """The grid measure: a smooth random scene scores about 1 at 4 px; the same scene with a faint
    4-px grid added (2 levels of 255), along the rows or diagonally (the weave the earlier
    starry_night drew), scores far higher, at 4 px and not at 2 px."""
    photo = pil_to_tensor(scene(256, 192, seed=3))[None].float() / 255
    y, x = torch.arange(192).view(-1, 1), torch.arange(256).view(1, -1)
    for pattern in (y % 4 < 2, (x + y) % 4 < 2):
        grid = photo + (2 / 255) * pattern.float()
        assert lattice_power(photo, 4) < 3
        assert lattice_power(grid, 4) > 10 * lattice_power(photo, 4)
        assert lattice_power(grid, 2) < 3


def test_lattice_amplitude_reads_a_grid_in_grey_levels():
    """A cosine grid of amplitude a (in levels of 255) added to a smooth scene reads about a at
    its period, along the rows, the diagonal, or at 2 px (the Nyquist frequency, one bin)."""
    photo = pil_to_tensor(scene(256, 192, seed=3))[None].double()
    y, x = torch.arange(192).view(-1, 1).double(), torch.arange(256).view(1, -1).double()
    assert lattice_amplitude(photo.float() / 255, 4) < 0.5 and lattice_amplitude(photo.float() / 255, 2) < 0.5
    for amplitude, period, phase in ((2.0, 4, y), (2.0, 4, x + y), (3.0, 2, y), (0.5, 2, x)):
        grid = (photo + amplitude * torch.cos(2 * math.pi * phase / period)).float() / 255
        assert lattice_amplitude(grid, period) == pytest.approx(amplitude, rel=0.25), (amplitude, period)
    assert math.isnan(lattice_amplitude(torch.rand(1, 3, 64, 64), 4))  # smaller than one window
