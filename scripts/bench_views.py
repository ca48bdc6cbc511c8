"""Throughput of the on-device view generators (images per second).

Runs ``multi_view`` (SimCLR/BYOL defaults with BYOL's asymmetric blur/solarize) and
``single_view`` on random uint8 batches at 32 px and 224 px and prints images/s, where an image
is one source image turned into all of its views. Usage::

    python scripts/bench_views.py [--device cpu|cuda] [--batch-size 256] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from hfssl.recipe import ViewsConfig
from hfssl.views import build_views


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(kind: str, views: ViewsConfig, image_size: int, batch_size: int, repeats: int, device: torch.device) -> float:
    """Median images/s of ``repeats`` timed calls after one warm-up call."""
    generate = build_views(kind, views, image_size, channels=3)
    pixels = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    generate(pixels, generator)
    timings = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        generate(pixels, generator)
        _synchronize(device)
        timings.append(time.perf_counter() - start)
    timings.sort()
    return batch_size / timings[len(timings) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    device = torch.device(arguments.device)
    byol = dict(blur_prob_per_view=(1.0, 0.1), solarize_prob_per_view=(0.0, 0.2))
    settings = [
        ("multi_view", "SimCLR: 2 views, jitter, grayscale", ViewsConfig()),
        ("multi_view", "BYOL: 2 views, jitter, grayscale, blur 1.0/0.1, solarize 0/0.2", ViewsConfig(**byol)),
        ("multi_view", "multi-crop: BYOL + 6 local views at 16/96 px", None),
        ("single_view", "MAE: crop + flip", ViewsConfig()),
    ]
    print(f"device={device} threads={torch.get_num_threads()} batch={arguments.batch_size} torch={torch.__version__}")
    for image_size in arguments.sizes:
        for kind, label, views in settings:
            if views is None:
                views = ViewsConfig(num_local_views=6, local_crop_size=16 if image_size == 32 else 96, **byol)
            rate = bench(kind, views, image_size, arguments.batch_size, arguments.repeats, device)
            print(f"{image_size:>4} px  {kind:<11}  {rate:>10.0f} images/s  {label}")


if __name__ == "__main__":
    main()
