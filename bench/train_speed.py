"""Training and inference speed of the CPU models: images in the default (NCHW) layout, channels-last, and
channels-last under bfloat16 autocast, side by side.

    OMP_NUM_THREADS=1 python bench/train_speed.py [--models small-cnn,small-segnet] [--batch 128] [--steps 8]

Random 32x32 inputs; a training step is forward + cross-entropy + backward + AdamW. Each figure is the best of
``--repeats`` timed runs after two warm-up steps; the ratios are over the default layout. The package feeds every
convolutional model its images channels-last (``modellock.nets.backbones.channels_last``); the weights keep their
layout. bf16 is ``torch.autocast("cpu", torch.bfloat16)``, what ``--mixed-precision bf16`` does on a CPU.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from modellock.nets.backbones import create_backbone
from modellock.tasks.segmentation.models import create_segmenter


def build(name: str, layout: str):
    model = create_segmenter(name, 5) if "seg" in name else create_backbone(name, 10)
    if layout != "channels_last":
        model._forward_pre_hooks.clear()  # the package's channels-last hook off: images as they come
    return model


def images_per_s(model, batch: int, steps: int, repeats: int, train: bool, bf16: bool = False) -> float:
    x = torch.randn(batch, 3, 32, 32)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if not train:
                with torch.no_grad():
                    model(x)
                return
            out = model(x)
        y = torch.zeros(out.shape[:1] + out.shape[2:], dtype=torch.long)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train(train)
    for _ in range(2):
        step()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, time.perf_counter() - t)
    return steps * batch / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="small-cnn,small-segnet")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"torch threads: {torch.get_num_threads()}, batch {args.batch}, 32x32\n")
    print("| model | step | default img/s | channels-last img/s (ratio) | channels-last + bf16 img/s (ratio) |\n"
          "| --- | --- | --- | --- | --- |")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        for train in (True, False):
            a, b, c = (images_per_s(build(name, layout), args.batch, args.steps, args.repeats, train, bf16)
                       for layout, bf16 in (("default", False), ("channels_last", False), ("channels_last", True)))
            print(f"| {name} | {'train' if train else 'inference'} | {a:.0f} | {b:.0f} ({b / a:.2f}x) | "
                  f"{c:.0f} ({c / a:.2f}x) |", flush=True)


if __name__ == "__main__":
    main()
