#!/usr/bin/env python
"""Images/s of CLIP's training step with a small ViT image tower at several ``model.patch_dropout`` ratios.

One training step = forward (both towers, CLIPLoss), backward and an AdamW step of
``HfsslCLIPForPreTraining``, on random images and captions; the patches kept are drawn from a generator as
the input builder does. The text tower is tiny (2 layers, 64 wide, 8 tokens) so the image tower dominates.
The ratios are timed in interleaved rounds (round r times every ratio once) and the median round is
reported, so a load change on a shared machine hits every ratio alike. Prints one JSON line.

Usage::

    OMP_NUM_THREADS=1 python scripts/bench_patch_dropout.py                      # CPU, 32 px, patch 4: 64 tokens
    python scripts/bench_patch_dropout.py --device cuda --batch-size 256 --hidden-size 384 --layers 12
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch


def build(ratio: float, args: argparse.Namespace) -> torch.nn.Module:
    from hfssl.models.clip import HfsslCLIPConfig, HfsslCLIPForPreTraining

    vision = {"model_type": "vit", "image_size": args.image_size, "patch_size": args.patch_size,
              "hidden_size": args.hidden_size, "num_hidden_layers": args.layers,
              "num_attention_heads": max(1, args.hidden_size // 64), "intermediate_size": 4 * args.hidden_size}
    text = {"model_type": "bert", "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 1, "intermediate_size": 256, "max_position_embeddings": 64}
    torch.manual_seed(0)
    config = HfsslCLIPConfig(vision_config=vision, text_config=text, projection_dim=64, patch_dropout=ratio,
                             tokenizer_name_or_path="unused")
    return HfsslCLIPForPreTraining(config).to(args.device).train()


def time_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, args: argparse.Namespace,
               generator: torch.Generator) -> float:
    """Seconds for ``args.steps`` training steps."""
    from hfssl.models.clip.towers import num_patches

    patches = num_patches(model.config.vision_config, args.image_size, args.image_size)
    pixels = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=args.device)
    input_ids = torch.randint(1, 1000, (args.batch_size, 8), device=args.device)
    synchronise = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    synchronise()
    start = time.perf_counter()
    for _ in range(args.steps):
        noise = torch.rand(args.batch_size, patches, generator=generator, device=args.device)
        optimizer.zero_grad(set_to_none=True)
        model(pixel_values=pixels, input_ids=input_ids, patch_dropout_noise=noise).loss.backward()
        optimizer.step()
    synchronise()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.5, 0.75])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--hidden-size", type=int, default=192)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (after one warm-up round)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    models = {ratio: build(ratio, args) for ratio in args.ratios}
    optimizers = {ratio: torch.optim.AdamW(model.parameters(), lr=1e-4) for ratio, model in models.items()}
    generator = torch.Generator(device=args.device).manual_seed(0)
    seconds: dict[float, list[float]] = {ratio: [] for ratio in args.ratios}
    for round_index in range(args.rounds + 1):
        for ratio in args.ratios:
            elapsed = time_steps(models[ratio], optimizers[ratio], args, generator)
            if round_index > 0:  # round 0 warms up (allocator, kernels)
                seconds[ratio].append(elapsed)
    rates = {str(ratio): args.batch_size * args.steps / statistics.median(seconds[ratio]) for ratio in args.ratios}
    base = rates[str(args.ratios[0])]
    tokens = (args.image_size // args.patch_size) ** 2
    print(json.dumps({
        "benchmark": "patch_dropout", "images_per_second": {key: round(value, 2) for key, value in rates.items()},
        "speedup": {key: round(value / base, 3) for key, value in rates.items()},
        "patch_tokens": tokens, "image_size": args.image_size, "patch_size": args.patch_size,
        "hidden_size": args.hidden_size, "layers": args.layers, "batch_size": args.batch_size, "steps": args.steps,
        "rounds": args.rounds, "device": args.device, "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None}))


if __name__ == "__main__":
    main()
