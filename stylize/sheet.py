"""Contact sheets: inputs and results side by side in one image, each cell labelled.

People would rather look than read: a batch can end with one picture of everything it did.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

LABEL_HEIGHT = 14
BACKGROUND = (255, 255, 255)
MISSING = (200, 200, 200)

Cell = tuple[str, "Image.Image | None", bool]  # label, picture, grey placeholder when there is none


def thumbnail(path: Path | None, side: int) -> Image.Image | None:
    """The image at ``path`` (upright) scaled to fit side x side, or None if it cannot be read."""
    if path is None:
        return None
    try:
        with Image.open(path) as img:
            img.draft("RGB", (side, side))  # JPEG: decode at a reduced size, much faster
            return ImageOps.contain(ImageOps.exif_transpose(img).convert("RGB"), (side, side))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def grid(cells: list[Cell], columns: int, side: int = 256) -> Image.Image:
    """Cells laid out row by row, each picture fitted into side x side under a label strip.

    A row is as tall as its tallest picture, so landscape photos do not sit between white bands.
    """
    rows = [cells[i:i + columns] for i in range(0, max(len(cells), 1), columns)]
    pictures = [[ImageOps.contain(picture, (side, side)) if picture is not None else None
                 for _, picture, _ in row] for row in rows]
    heights = [max((p.height for p in row if p is not None), default=side) for row in pictures]
    canvas = Image.new("RGB", (columns * side, sum(heights) + len(rows) * LABEL_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = 0
    for row, row_pictures, height in zip(rows, pictures, heights):
        for column, ((label, _, placeholder), picture) in enumerate(zip(row, row_pictures)):
            x = column * side
            if picture is None and placeholder:
                draw.rectangle((x + 2, y + LABEL_HEIGHT + 2, x + side - 3, y + LABEL_HEIGHT + height - 3), fill=MISSING)
            elif picture is not None:
                top = y + LABEL_HEIGHT + (height - picture.height) // 2
                canvas.paste(picture, (x + (side - picture.width) // 2, top))
            if label:
                draw.rectangle((x, y, x + side - 1, y + LABEL_HEIGHT - 1), fill=(0, 0, 0))
                draw.text((x + 3, y + 1), _fit(draw, label, side - 6), fill=(255, 255, 255))
        y += LABEL_HEIGHT + height
    return canvas


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    """Shorten ``text`` with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def contact_sheet(contents: list[Path], styles: list[tuple[str, Path | None]],
                  results: dict[tuple[Path, str], Path | None], side: int = 256) -> Image.Image:
    """Rows of photos, columns of styles: the photo, then its result with each style.

    ``styles``: (label, image or None for a trained model); ``results[(photo, label)]``: the
    output file, or None where the job failed (a grey cell). Pairs not in ``results`` stay blank.
    With trained models only there is no painting to show: no header row (it was a blank band).
    """
    cells: list[Cell] = []
    if any(path is not None for _, path in styles):
        cells += [("", None, False)] + [(label, thumbnail(path, side), path is not None) for label, path in styles]
    for photo in contents:
        cells.append((photo.name, thumbnail(photo, side), True))
        for label, _ in styles:
            if (photo, label) in results:
                output = results[(photo, label)]
                cells.append((label if output is not None else f"{label}: failed", thumbnail(output, side), True))
            else:
                cells.append(("", None, False))
    return grid(cells, columns=len(styles) + 1, side=side)
