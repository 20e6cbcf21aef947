"""Batch planning: which images to stylise with which styles, and where each result goes.

Path work only: files, folders and glob patterns expand into sources; sources pair
into jobs (every content x style, or zipped); a name template gives each job its output path.
Everything that could go wrong with the plan (nothing matched, a template that would write
outside the output folder, two jobs writing the same file) is found here, before any work.
"""

from __future__ import annotations

import glob
import os
import re
import string
from dataclasses import dataclass, replace
from pathlib import Path

from stylize.atomic import check_folder
from stylize.config import Pairing
from stylize.errors import InputError, OutputError
from stylize.imageio import FORMATS, IMAGE_SUFFIXES, animation_suffix
from stylize.paths import did_you_mean, file_problem

# Files a folder or pattern contributes (case-insensitive).
TEMPLATE_FIELDS = ("content", "style", "variant", "dir", "ext")
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Source:
    """An input image and where it sits below the folder or pattern that named it."""

    path: Path
    subdir: str = ""  # the {dir} field: sub-folder below the given folder ("" at its top)
    explicit: bool = True  # named as a file, not found in a folder or by a pattern


@dataclass(frozen=True)
class PlannedJob:
    content: Source
    styles: tuple[Path, ...]  # blended into one style; empty with a trained model
    style_label: str  # the {style} field: style stems joined by "+", or the model's name
    output: Path
    exists: bool  # the output is there already (skipped unless --overwrite)
    mask: Path | None = None  # --mask: where the style goes (white) and the photo stays (black)
    invert_mask: bool = False
    variant: str = ""  # the {variant} field: a sweep's setting (config.Variant.label), "" without one

    @property
    def column(self) -> str:
        """The style and the sweep's setting: a contact sheet's column, a progress line's style."""
        return f"{self.style_label} ({self.variant})" if self.variant else self.style_label


def expand(specs: list[Path | str], recursive: bool, what: str) -> list[Source]:
    """Files, folders (searched recursively with ``recursive``) and glob patterns, in natural order.

    ``what`` names the inputs in messages ("content", "style"). Duplicates are dropped."""
    found: list[Source] = []
    for spec in specs:
        text = str(spec)
        path = Path(text)
        if path.is_file():
            found.append(Source(path))
        elif path.is_dir():
            found += _from_folder(path, recursive, what)
        elif _GLOB_CHARS.search(text):
            found += _from_pattern(text, what)
        elif os.path.lexists(path):  # a device, a pipe, a broken link
            raise InputError(f"{text}: {file_problem(path, 'an image file or a folder')} (a {what} input)")
        else:
            raise InputError(f"{text}: no such file or folder (a {what} input){did_you_mean(path)}")
    unique: dict[Path, Source] = {}
    for source in found:
        unique.setdefault(source.path.resolve(), source)
    return list(unique.values())


def _from_folder(folder: Path, recursive: bool, what: str) -> list[Source]:
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    images = [p for p in candidates if _is_image_name(p.relative_to(folder)) and p.is_file()]
    if not images:
        hint = "" if recursive or not any(p.is_dir() for p in folder.iterdir()) else "; add --recursive for sub-folders"
        raise InputError(f"{folder}: no {what} images in this folder (looked for "
                         f"{', '.join(sorted(IMAGE_SUFFIXES))}){hint}")
    return [Source(p, _subdir(p.parent.relative_to(folder)), explicit=False) for p in sorted(images, key=natural_key)]


def _from_pattern(pattern: str, what: str) -> list[Source]:
    root = _pattern_root(pattern)
    matches = [Path(m) for m in glob.glob(pattern, recursive=True)]
    images = [p for p in matches if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not images:
        raise InputError(f"{pattern}: no {what} images match this pattern")
    return [Source(p, _subdir(p.parent.relative_to(root)) if p.is_relative_to(root) else "", explicit=False)
            for p in sorted(images, key=natural_key)]


def _pattern_root(pattern: str) -> Path:
    """The folder part of a pattern before its first wildcard: 'photos/**/*.jpg' -> photos."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if _GLOB_CHARS.search(p))]]
    return Path(*fixed) if fixed else Path(".")


def _is_image_name(relative: Path) -> bool:
    # Hidden files and folders are skipped: .part files of writes in progress, .DS_Store, ...
    return relative.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in relative.parts)


def _subdir(relative: Path) -> str:
    return "" if str(relative) == "." else relative.as_posix()


def natural_key(path: Path) -> list:
    """Sort key that puts img2 before img10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def pair(contents: list[Source], style_groups: list[tuple[Path, ...]], pairing: Pairing
         ) -> list[tuple[Source, tuple[Path, ...]]]:
    """(content, styles) for every job; ``style_groups`` holds one group per output style."""
    if pairing is Pairing.zip:
        if len(contents) != len(style_groups):
            raise InputError(f"--pairs zip needs as many styles as contents: got {len(contents)} content and "
                             f"{len(style_groups)} style image(s); use --pairs product for every combination")
        return list(zip(contents, style_groups))
    return [(content, group) for content in contents for group in style_groups]


def check_template(template: str) -> None:
    """Raise InputError for a --name template with unknown or malformed fields."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise InputError(f"--name '{template}': {exc}; fields look like {{content}}") from None
    for name in fields:
        if name not in TEMPLATE_FIELDS:
            known = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
            raise InputError(f"--name '{template}': unknown field {{{name}}}; use {known}")


def render(template: str, folder: Path, content: Source, style_label: str, ext: str, variant: str = "") -> Path:
    """The output path of one job inside ``folder``; refuse one that would land outside it."""
    name = template.format(content=content.path.stem, style=style_label, variant=variant, dir=content.subdir or ".",
                           ext=ext)
    relative = Path(name)
    if relative.is_absolute() or not name.strip() or ".." in relative.parts:
        if not variant and "{variant}" in template:
            raise OutputError(f"--name '{template}' gives '{name}': {{variant}} is empty without several values of "
                              "--style-weight, --style-scale or --strength; leave it out of --name")
        raise OutputError(f"--name '{template}' gives '{name}', which is not inside the output folder {folder}; "
                          "use a relative name without '..'")
    return folder / relative


def output_folder(output: Path | None, batch: bool) -> tuple[Path | None, Path | None]:
    """(folder, file) from ``-o``: an existing folder or a name without a suffix is a folder; a
    name with a suffix is a file (single runs only); without ``-o`` a single run writes beside
    its photo (None, None)."""
    if output is None:
        if batch:
            raise OutputError("a batch writes many images: give an output folder with -o DIR")
        return None, None
    output = Path(output)
    if output.suffix and not output.is_dir():
        if batch:
            raise OutputError(f"-o {output}: a batch writes many images; give a folder, and name the files "
                              "with --name")
        return None, output
    if os.path.lexists(output) and not output.is_dir():  # e.g. -o /dev/null, or an existing "notes"
        if batch:
            raise OutputError(f"-o {output}: is a file, not a folder; a batch writes into a folder: choose another")
        raise OutputError(f"-o {output}: a file of that name is there, and a name without a suffix is a folder; "
                          f"name the output with its format, such as {output.name}.png, or choose a folder")
    return output, None


def plan(pairs: list[tuple[Source, tuple[Path, ...]]], folder: Path | None, template: str, ext: str,
         model_name: str | list[str] | None = None, file: Path | None = None,
         variants: tuple[str, ...] = ("",), animations_keep_format: bool = False) -> list[PlannedJob]:
    """Output paths for every (content, styles) pair; two jobs writing one file is an error.

    ``model_name``: the style of every job (a trained network's name), or of each pair (several
    networks); ``folder`` None: beside each photo; ``file``: the one output of a single run;
    ``variants``: a sweep's settings (config.Variant.label), each pair made once with each;
    ``animations_keep_format``: ``ext`` is the default, and an animated GIF, WebP or PNG keeps
    its own format instead (its file's header is read)."""
    names = model_name if isinstance(model_name, list) else [model_name] * len(pairs)
    check_template(template)
    animated: dict[Path, str | None] = {}

    def ext_of(content: Source) -> str:
        if not animations_keep_format:
            return ext
        if content.path not in animated:
            animated[content.path] = animation_suffix(content.path)
        return (animated[content.path] or "." + ext)[1:]

    inputs = {path.resolve() for path in {p for content, styles in pairs for p in (content.path, *styles)}}
    jobs: list[PlannedJob] = []
    seen: dict[Path, PlannedJob] = {}
    for ((content, styles), name), variant in ((pair, variant) for pair in zip(pairs, names) for variant in variants):
        label = name if name is not None else "+".join(s.stem for s in styles)
        if file is not None:
            output = file
        else:
            output = render(template, content.path.parent if folder is None else folder, content, label,
                            ext_of(content), variant)
        if output.resolve() in inputs:
            # Even with --overwrite: that redoes results, it must not replace the photos themselves.
            raise OutputError(f"{output}: is an input of this run and is never written over; choose another -o "
                              "or --name")
        job = PlannedJob(content, styles, label, output, output.exists(), variant=variant)
        if file is None and output.suffix.lower() not in FORMATS:
            raise OutputError(f"--name '{template}' gives '{output.name}', which has no image suffix; end it "
                              f"with .{{ext}} or one of {', '.join(sorted(FORMATS))}")
        if output in seen:
            raise OutputError(_clash(seen[output], job))
        seen[output] = job
        jobs.append(job)
    return jobs


def _clash(first: PlannedJob, second: PlannedJob) -> str:
    """Why two jobs would write one file, and what tells them apart."""
    message = f"{_describe(first)} and {_describe(second)} would both write {second.output}; "
    if (first.content.path.stem, first.content.subdir, first.style_label, first.variant) == \
            (second.content.path.stem, second.content.subdir, second.style_label, second.variant):
        # Photos of one name at the same depth of two input folders: no --name field tells them apart.
        return message + "run each input folder into its own -o folder, or rename one of the photos"
    return message + "put {content}, {style}, {variant} or {dir} into --name to tell them apart"


def _describe(job: PlannedJob) -> str:
    return f"{job.content.path} x {job.column}"


def without_outputs(contents: list[Source], folder: Path | None) -> list[Source]:
    """Drop photos found (by a folder or pattern) inside the output folder: earlier results must
    not become new inputs when a batch is run again with -o inside its input folder."""
    if folder is None:
        return contents
    root = folder.resolve()
    return [c for c in contents if c.explicit or not c.path.resolve().is_relative_to(root)]


def prepare_folders(jobs: list[PlannedJob]) -> None:
    """Create the output folders and check that they are writable, before any work."""
    for folder in dict.fromkeys(job.output.parent for job in jobs):
        check_folder(folder)


def with_masks(jobs: list[PlannedJob], mask: Path, invert: bool) -> list[PlannedJob]:
    """Each job with its ``--mask``: one image for every photo, or from a folder the image named
    as the photo (``masks/a.png`` for ``photos/a.jpg``; below it, the photo's sub-folder of a
    --recursive input). Every mask is found, and none is a photo or an output of the batch,
    before any work."""
    if mask.is_dir():
        photos = {job.content.path.resolve() for job in jobs}
        found = {}
        for job in jobs:
            folder = mask / job.content.subdir
            stem = job.content.path.stem
            candidates = sorted(p for p in folder.glob(glob.escape(stem) + ".*")
                                if p.stem == stem and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if any(p.resolve() in photos for p in candidates):
                raise InputError(f"{mask}: holds the photos themselves; keep their masks in a folder of their own")
            if not candidates:
                raise InputError(f"{mask}: no mask for {job.content.path.name}; put an image named "
                                 f"{stem}.png (or .jpg, ...) in {folder}")
            if len(candidates) > 1:
                names = " and ".join(p.name for p in candidates[:2])
                raise InputError(f"{folder}: {names} are both masks for {job.content.path.name}; keep one")
            found[job.output] = candidates[0]
    else:
        problem = file_problem(mask, "a mask image")
        if problem:
            raise InputError(f"{mask}: {problem}")
        found = {job.output: mask for job in jobs}
    masks = {m.resolve() for m in found.values()}
    for job in jobs:
        if job.output.resolve() in masks:
            # Even with --overwrite: a mask is drawn by hand (an --init-image may be the output: going on).
            raise OutputError(f"{job.output}: is the --mask of this run and is never written over; choose another -o")
    return [replace(job, mask=found[job.output], invert_mask=invert) for job in jobs]
