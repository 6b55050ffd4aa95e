#!/usr/bin/python3
"""W3 through torchvision, the peer most PyTorch users run: ImageFolder with PIL, RandomResizedCrop
(224), RandomHorizontalFlip, ToTensor, Normalize (ImageNet's), a DataLoader of batches of 256,
shuffled, one epoch per figure, `--workers` processes (the machine's cores by default).

    scripts/w3-torchvision.py DIR/jpeg [--repeats 3] [--items N] [--workers 2]

Prints each epoch's items/s and the median after a warm-up epoch, as benchmark_photos does.
Needs python3-torchvision and python3-pil (scripts/setup.sh --benchmarks)."""
import argparse
import os
import statistics
import time

import torch
import torchvision
from torchvision import transforms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--items", type=int, default=0, help="files used, from the start (0: all)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    torch.set_num_threads(1)  # the workers are the parallelism, as in batchpipe's figures
    transform = transforms.Compose([
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    dataset = torchvision.datasets.ImageFolder(args.folder, transform=transform)
    if args.items:
        dataset = torch.utils.data.Subset(dataset, range(min(args.items, len(dataset))))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.workers, persistent_workers=args.workers > 0)
    print(f"{len(dataset)} files, torchvision {torchvision.__version__}, {args.workers} workers")
    figures = []
    for epoch in range(args.repeats + 1):
        start, items = time.perf_counter(), 0
        for images, labels in loader:
            items += images.shape[0]
        rate = items / (time.perf_counter() - start)
        print(f"round {epoch} torchvision {rate:8.0f} items/s", flush=True)
        if epoch:
            figures.append(rate)
    print(f"torchvision: median {statistics.median(figures):.0f} items/s "
          f"(min {min(figures):.0f}, max {max(figures):.0f})")


if __name__ == "__main__":
    main()
