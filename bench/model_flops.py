"""FLOPs of the work that scales with a dataset, counted on PyTorch's meta device (no weights, no GPU, seconds).

- one InstructPix2Pix edit (the SD 1.5 architecture of ``timbrooks/instruct-pix2pix``): the UNet call as the
  pipeline makes it (3 x batch: image guidance, text guidance, none) times the steps, plus the VAE's encode
  and decode, at 256 and 512 px;
- one training image of ``vit_base_patch16_224`` at 224 px (forward and backward).

``torch.utils.flop_counter`` counts 2 FLOPs per multiply-add; attention runs on the math kernel so that its
matmuls are counted. docs/scaling.md turns these counts into GPU hours.

    python bench/model_flops.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def count(fn) -> float:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        fn()
    return float(counter.get_total_flops())


def pix2pix_flops(resolution: int, steps: int = 5) -> dict:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from modellock.testing import FULL_SIZE_UNET, FULL_SIZE_VAE

    with torch.device("meta"):
        unet, vae = UNet2DConditionModel(**FULL_SIZE_UNET), AutoencoderKL(**FULL_SIZE_VAE)
    side = resolution // 8
    with torch.no_grad():
        unet_call = count(lambda: unet(torch.randn(3, 8, side, side, device="meta"), 999,
                                       encoder_hidden_states=torch.randn(3, 77, 768, device="meta")))
        vae_both = count(lambda: vae.decode(vae.encode(torch.randn(1, 3, resolution, resolution,
                                                                   device="meta")).latent_dist.mode()))
    return {"resolution": resolution, "steps": steps, "unet_call_gflop": unet_call / 1e9,
            "vae_encode_decode_gflop": vae_both / 1e9,
            "per_image_tflop": (steps * unet_call + vae_both) / 1e12,
            "unet_share": steps * unet_call / (steps * unet_call + vae_both)}


def vit_training_flops() -> dict:
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model("vit_base_patch16_224", num_classes=1000)
    flops = count(lambda: model(torch.randn(1, 3, 224, 224, device="meta")).sum().backward())
    return {"model": "vit_base_patch16_224", "image_size": 224, "train_gflop_per_image": flops / 1e9}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    result = {"pix2pix": [pix2pix_flops(256), pix2pix_flops(512)], "vit_training": vit_training_flops(),
              "command": "python bench/model_flops.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    print("| work | resolution | UNet call (3x guidance) GFLOP | VAE encode + decode GFLOP | per image TFLOP |")
    print("|---|---|---|---|---|")
    for r in result["pix2pix"]:
        print(f"| InstructPix2Pix edit, {r['steps']} steps | {r['resolution']} | {r['unet_call_gflop']:.0f} | "
              f"{r['vae_encode_decode_gflop']:.0f} | {r['per_image_tflop']:.2f} |")
    v = result["vit_training"]
    print(f"| {v['model']} training (forward + backward) | {v['image_size']} | - | - | "
          f"{v['train_gflop_per_image'] / 1e3:.3f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
