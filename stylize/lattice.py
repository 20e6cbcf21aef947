"""Measures of a regular grid in an image, such as the lattice a network's upsampled maps can
leave in its output: how far it stands out from the frequencies around it (``lattice_power``)
and how strong it is in grey levels (``lattice_amplitude``). Used by the bundled models' tests
and ``benchmarks/model_quality.py``."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def _taper(window: int) -> torch.Tensor:
    hann = torch.hann_window(window, periodic=False, dtype=torch.float64)
    return hann[:, None] * hann[None, :]


def _window_spectra(image: torch.Tensor, window: int) -> Iterator[torch.Tensor]:
    """The 2-D spectra of half-overlapping Hann-tapered windows of an image ``[1,3,H,W]``'s
    luminance as an 8-bit file holds it, one window at a time (a large image has thousands)."""
    gray = (image[0].float().clamp(0, 1) * 255).round().mean(0).double()
    taper = _taper(window)
    for y in range(0, gray.shape[0] - window + 1, window // 2):
        for x in range(0, gray.shape[1] - window + 1, window // 2):
            patch = gray[y:y + window, x:x + window]
            yield torch.fft.fft2((patch - patch.mean()) * taper)


def _grid_frequencies(window: int, period: int) -> list[tuple[int, int]]:
    """A ``period``-pixel grid's frequencies: along either axis and either diagonal."""
    f = window // period
    return [(0, f), (f, 0), (f, f), (f, -f)]


def lattice_power(image: torch.Tensor, period: int, window: int = 128) -> float:
    """How strongly an image ``[1,3,H,W]`` shows a grid of ``period`` pixels, such as the lattice
    of a network's upsampled maps: the power of its luminance at each of the grid's frequencies
    (along either axis and either diagonal) over the mean of the 8 frequencies 2 bins around it,
    averaged over half-overlapping Hann-tapered windows; the strongest of the four. A photo scores
    about 1 (up to 5 where it has fine regular structure, such as a bridge's cables); a grid
    shows as a spike (earlier bundled models: 7-41 at 4 px, along the axes or the diagonals).
    Measured on the image as an 8-bit file holds it: without the rounding, a frequency that a
    smooth network output hardly has (2 px, the finest) showed spikes of up to 15 that no file
    of it shows. A ratio, it can also be high for a component far too faint to see where the
    frequencies around it are fainter still: see ``lattice_amplitude``. Images smaller than one
    window give nan."""
    power = torch.zeros(window, window, dtype=torch.float64)
    for spectrum in _window_spectra(image, window):
        power += spectrum.abs() ** 2
    ring = [(dy, dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2) if dy or dx]
    ratios = [power[fy % window, fx % window]
              / torch.stack([power[(fy + dy) % window, (fx + dx) % window] for dy, dx in ring]).mean()
              for fy, fx in _grid_frequencies(window, period)]
    return float(torch.stack(ratios).max())


def lattice_amplitude(image: torch.Tensor, period: int, window: int = 128) -> float:
    """The amplitude, in grey levels of 255, of the strongest of a ``period``-pixel grid's
    components (the frequencies ``lattice_power`` looks at) in any one window: a cosine of
    amplitude a added to an image reads about a. The grids seen in earlier bundled models were
    0.8-5 levels strong at 4 px (commit c8cf814: ``starry_night``'s weave 0.8-1.3, ``shipwreck``'s
    mosaic 3-5); a spike of ``lattice_power`` at a few hundredths of a level is invisible.
    Images smaller than one window give nan."""
    magnitude = None
    for spectrum in _window_spectra(image, window):
        magnitude = spectrum.abs() if magnitude is None else torch.maximum(magnitude, spectrum.abs())
    if magnitude is None:
        return float("nan")
    # A real cosine splits between a frequency and its mirror image, except at the Nyquist
    # frequency (a 2-px period along an axis, or both), where both are the same bin.
    nyquist, taper_sum = window // 2, float(_taper(window).sum())
    return max(float(magnitude[fy % window, fx % window]) / taper_sum
               * (1 if fy % nyquist == 0 and fx % nyquist == 0 else 2)
               for fy, fx in _grid_frequencies(window, period))
