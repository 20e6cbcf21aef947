"""Reading and writing a 1080p frame: stylize's conversions against the plain ones, and the
encoders, side by side in one run (one thread, as a batch's reader and writer threads run them).

    python benchmarks/imageio_speed.py [--repeats 10]

1. tensor -> PIL (`imageio.to_pil`) against clamp, scale, round, convert and copy one after the
   other (stylize's before); PIL -> tensor (`imageio._to_tensors`) against convert, copy and
   divide. Both give the same bytes and floats (tests/test_imageio.py).
2. Encoding the frame: PNG at stylize's zlib level and at PIL's default 6, and JPEG at quality 95;
   decoding it from PNG and JPEG.
"""

from __future__ import annotations

import argparse
import io

import torch
from PIL import Image

from common import REPO, SHARED, alternate, timed
from stylize.imageio import PNG_COMPRESS_LEVEL, _to_tensors, load_image, resize, to_pil


CPU = torch.device("cpu")


def plain_to_pil(image: torch.Tensor) -> Image.Image:
    data = (image[0].clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.frombytes("RGB", (data.shape[2], data.shape[1]), data.permute(1, 2, 0).contiguous().numpy().tobytes())


def plain_to_tensor(img: Image.Image) -> torch.Tensor:
    data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return data.view(img.height, img.width, 3).permute(2, 0, 1).unsqueeze(0).float().contiguous() / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    photo = SHARED / "content" / "tubingen.jpg"
    photo = photo if photo.exists() else REPO / "samples" / "chelsea.jpg"
    frame = resize(load_image(photo).rgb, (1080, 1920))
    picture = to_pil(frame)
    print(f"a 1920x1080 frame ({photo.name}), one thread; conversions: medians of {args.repeats} taken in "
          f"turn, the rest: means of {args.repeats}")
    pairs = (("tensor -> PIL", lambda: to_pil(frame), lambda: plain_to_pil(frame)),
             ("PIL -> tensor", lambda: _to_tensors(picture), lambda: plain_to_tensor(picture)))
    for label, ours, plain in pairs:
        times = alternate({"ours": ours, "plain": plain}, CPU, args.repeats)
        a, b = times["ours"] * 1000, times["plain"] * 1000
        print(f"  {label}: {a:.1f} ms, plain {b:.1f} ms ({b / a:.2f}x)")
    encoded = {}
    encoders = ((f"PNG, zlib level {PNG_COMPRESS_LEVEL}", "PNG", {"compress_level": PNG_COMPRESS_LEVEL}),
                ("PNG, zlib level 6 (PIL's default)", "PNG", {"compress_level": 6}),
                ("JPEG, quality 95", "JPEG", {"quality": 95}))
    for label, fmt, options in encoders:
        ms = timed(lambda: picture.save(io.BytesIO(), format=fmt, **options), CPU, args.repeats) * 1000
        buffer = io.BytesIO()
        picture.save(buffer, format=fmt, **options)
        encoded[fmt] = buffer.getvalue()
        print(f"  encode {label}: {ms:.1f} ms, {len(encoded[fmt]) / 2**20:.2f} MiB")
    for fmt, data in encoded.items():
        ms = timed(lambda: Image.open(io.BytesIO(data)).load(), CPU, args.repeats) * 1000
        print(f"  decode {fmt}: {ms:.1f} ms")


if __name__ == "__main__":
    main()
