#!/usr/bin/python3
"""Writes tests/data/pillow_resize.json: what Pillow's Image.resize gives for a small RGB image
(and a float one) with each filter, shrinking, enlarging and from fractional boxes. The tests
compare batchpipe's resample kernels against it pixel for pixel. Pillow 9.4 (Debian 12) made the
stored file; run again (`scripts/pillow-resize-reference.py`) to check against another."""
import json
import pathlib
import sys

import numpy as np
from PIL import Image

FILTERS = {"box": Image.BOX, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def source(height, width, channels):
    # Smooth shapes and sharp edges (where bicubic over- and undershoots and clips), and noise.
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(7)
    planes = [(127 + 120 * np.sin(x / (3 + c) + y / (5 - c))) for c in range(channels)]
    image = np.stack(planes, -1)
    image[(x // 6 + y // 5) % 2 == 0] = 250
    image[y % 11 == 3] = 5
    image += rng.integers(-6, 7, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/pillow_resize.json")
    rgb = source(29, 41, 3)
    grey_float = source(23, 19, 1)[..., 0].astype(np.float32) * 1.5 - 20
    cases = []
    for name, flt in FILTERS.items():
        for size, box in [((17, 13), None), ((50, 64), None), ((41, 29), None), ((7, 5), None),
                          ((20, 16), (3.5, 2.25, 30.75, 20.5)), ((12, 30), (0.0, 1.0, 40.0, 26.0)),
                          ((33, 19), (10.2, 4.7, 18.9, 11.3))]:
            got = np.asarray(Image.fromarray(rgb).resize(size, flt, box=box))
            cases.append({"image": "rgb", "filter": name, "width": size[0], "height": size[1],
                          "box": list(box) if box else None, "expected": got.reshape(-1).tolist()})
        got = np.asarray(Image.fromarray(grey_float, "F").resize((11, 37), flt))
        cases.append({"image": "float", "filter": name, "width": 11, "height": 37, "box": None,
                      "expected": got.reshape(-1).tolist()})
    json.dump({"pillow": Image.__version__,
               "rgb": {"shape": list(rgb.shape), "data": rgb.reshape(-1).tolist()},
               "float": {"shape": list(grey_float.shape) + [1], "data": grey_float.reshape(-1).tolist()},
               "cases": cases}, open(out, "w"), separators=(",", ":"))
    print(f"{out}: {len(cases)} cases from Pillow {Image.__version__}")


main()
