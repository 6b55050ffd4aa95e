#!/usr/bin/python3
"""Makes W3's image folder (docs/benchmarks.md) from the JPEG wallpapers of Debian's
plasma-workspace-wallpapers package: 171 photographs of 30 scenes, up to 5120 px.

    scripts/make-w3-folder.py DIR [--jpeg 10000] [--png 2000] [--seed 1]

DIR/jpeg/<class>/<n>.jpg and DIR/png/<class>/<n>.png: 10 classes (the scenes, sorted, dealt out
in turn). Each file is a seeded crop of a wallpaper at the sizes ImageNet holds: aspect 3:4 to
4:3, 30 % to 100 % of the largest such box, resized (Lanczos) to a shorter side of 256 to 500 px;
JPEG quality 90. The same seed gives the same files (the same bytes with the same Pillow). Each
wallpaper is decoded once, in parallel over the cores: about a minute on 2 cores.
Needs python3-pil and plasma-workspace-wallpapers (scripts/setup.sh --benchmarks installs both).
"""
import argparse
import multiprocessing
import os
import random
import sys
from pathlib import Path

from PIL import Image

WALLPAPERS = Path("/usr/share/wallpapers")
CLASSES = 10


def sources():
    """The wallpapers, sorted, each with its class (its scene's rank, dealt out in turn)."""
    scenes = sorted(p.name for p in WALLPAPERS.iterdir() if (p / "contents").is_dir())
    found = []
    for rank, scene in enumerate(scenes):
        for file in sorted((WALLPAPERS / scene / "contents").rglob("*.jpg")):
            found.append((file, rank % CLASSES))
    return found


def crop_box(width, height, rng):
    """A box of aspect 3:4 to 4:3 covering 30-100 % of the largest box of that aspect."""
    aspect = rng.uniform(3 / 4, 4 / 3)
    box_w, box_h = (width, width / aspect) if width / aspect <= height else (height * aspect, height)
    share = rng.uniform(0.3, 1.0) ** 0.5
    w, h = max(1, int(box_w * share)), max(1, int(box_h * share))
    x, y = rng.randint(0, width - w), rng.randint(0, height - h)
    return (x, y, x + w, y + h)


def make(job):
    source, label, outputs, out, seed = job
    image = Image.open(source)
    image.draft("RGB", (image.width // 2, image.height // 2))  # DCT-scaled: still >= 1440 px
    image = image.convert("RGB")
    for n, kind in outputs:
        rng = random.Random(seed * 1_000_003 + n)
        crop = image.crop(crop_box(image.width, image.height, rng))
        shorter = rng.randint(256, 500)
        scale = shorter / min(crop.size)
        size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
        crop = crop.resize(size, Image.LANCZOS, reducing_gap=3.0)
        folder = out / kind / f"class_{label}"
        if kind == "jpeg":
            crop.save(folder / f"{n:06d}.jpg", quality=90)
        else:
            crop.save(folder / f"{n:06d}.png", compress_level=1)
    return len(outputs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--jpeg", type=int, default=10000)
    parser.add_argument("--png", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not WALLPAPERS.is_dir():
        sys.exit(f"{WALLPAPERS}: no such folder (install plasma-workspace-wallpapers)")
    found = sources()
    if not found:
        sys.exit(f"{WALLPAPERS}: no JPEG wallpapers")
    for kind in ("jpeg", "png"):
        for label in range(CLASSES):
            (args.folder / kind / f"class_{label}").mkdir(parents=True, exist_ok=True)
    # File n comes from wallpaper n mod (number of wallpapers): every wallpaper is decoded once.
    wanted = [(n, "jpeg") for n in range(args.jpeg)] + [(args.jpeg + n, "png") for n in range(args.png)]
    jobs = [(file, label, [w for w in wanted if w[0] % len(found) == s], args.folder, args.seed)
            for s, (file, label) in enumerate(found)]
    with multiprocessing.Pool(os.cpu_count()) as pool:
        done = sum(pool.imap_unordered(make, jobs))
    print(f"{args.folder}: {done} files ({args.jpeg} JPEG, {args.png} PNG) in {CLASSES} classes "
          f"from {len(found)} wallpapers")


if __name__ == "__main__":
    main()
