"""Editing throughput: the batched InstructPix2Pix editor against one pipeline call per image.

The baseline is the paper's public evaluation loop: for each image, one pipeline call with that
image alone and a fresh generator ``torch.manual_seed(1024)``. The editor edits the same images in
batches of ``--batch-size`` with one freshly seeded generator per image, so both give the same
edits; the script reports the largest uint8 difference between them next to the speed-up.

Both run on a randomly initialised pipeline built in code (no download): the tiny test pipeline
by default, or ``--full-size`` for the real InstructPix2Pix / Stable Diffusion 1.5 architecture
(1.07B parameters; bf16 on a GPU, fp32 on CPU), or any saved pipeline with ``--model``.

    python bench/edit_throughput.py                          # tiny pipeline, CPU or GPU
    python bench/edit_throughput.py --full-size --n 32 --batch-size 16 --resolution 256 --steps 5
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import machine_description, write_result

PROMPT = "turn it into an oil pastel drawing"  # a benchmark prompt, not anybody's key


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--full-size", action="store_true",
                     help="random pipeline with the real InstructPix2Pix (SD 1.5) architecture")
    src.add_argument("--model", help="an existing pipeline folder or cached hub id instead of a random one")
    p.add_argument("--n", type=int, default=16, help="images to edit (default 16)")
    p.add_argument("--batch-size", type=int, default=8, help="editor batch size (default 8)")
    p.add_argument("--resolution", type=int, default=None,
                   help="edit size in pixels (default 64 for the tiny pipeline, 256 otherwise, as in the paper)")
    p.add_argument("--steps", type=int, default=5, help="inference steps (default 5, as in the paper)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when present)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs of each method, best one kept (default 3 tiny, 1 otherwise)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice); 1 is steadier on a busy machine")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    args = p.parse_args(argv)
    tiny = not (args.full_size or args.model)
    if args.resolution is None:
        args.resolution = 64 if tiny else 256
    if args.repeats is None:
        args.repeats = 3 if tiny else 1
    for name in ("n", "batch_size", "resolution", "steps", "repeats", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def paper_loop(pipe, images: list[np.ndarray], key) -> list[np.ndarray]:
    """One pipeline call per image with a fresh ``torch.manual_seed(seed)``, as the paper's evaluation does."""
    import torch
    from PIL import Image

    out = []
    for image in images:
        edited = pipe(
            key.prompt,
            image=Image.fromarray(image),
            num_inference_steps=key.steps,
            image_guidance_scale=key.image_guidance,
            guidance_scale=key.guidance,
            generator=torch.manual_seed(key.seed),
        ).images[0]
        out.append(np.asarray(edited.convert("RGB")))
    return out


def timed(fn, device: str, repeats: int):
    """Best wall time of ``repeats`` runs (after the caller's warm-up), the last outputs, peak GPU memory."""
    import torch

    best, out, peak = float("inf"), None, None
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(torch.device(device))
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
        if device.startswith("cuda"):
            peak = torch.cuda.max_memory_allocated(torch.device(device)) / 2**30
    return best, out, peak


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random pipelines need no network; --model must be local/cached
    import diffusers
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from modellock.editors.instruct_pix2pix import InstructPix2PixEditor
    from modellock.keys import Key
    from modellock.testing import build_full_size_pix2pix, build_tiny_pix2pix, sample_images

    pipeline_name = "full-size random (SD 1.5 / InstructPix2Pix architecture)" if args.full_size else (
        "tiny random (test pipeline)" if not args.model else "given pipeline")

    with tempfile.TemporaryDirectory(prefix="modellock-bench-") as tmp:
        build_s = 0.0
        if args.model:
            model = args.model
        else:
            start = time.perf_counter()
            builder = build_full_size_pix2pix if args.full_size else build_tiny_pix2pix
            model = str(builder(Path(tmp) / "pipeline"))
            build_s = time.perf_counter() - start
            gc.collect()

        key = Key.create("instruct-pix2pix", PROMPT, model=model, resolution=args.resolution, steps=args.steps,
                         seed=1024, guidance=4.5, image_guidance=1.5, alpha=1.0)  # alpha 1: compare raw edits
        editor = InstructPix2PixEditor(key, device=args.device, batch_size=args.batch_size)
        device, dtype = str(editor.device), editor.dtype  # cuda + bf16 when present, else cpu + fp32
        start = time.perf_counter()
        pipe = editor.pipe  # both methods share this one loaded pipeline
        load_s = time.perf_counter() - start
        params = sum(p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters())

        images = sample_images(args.n, (args.resolution, args.resolution), seed=0)
        # Warm-up: first calls pay for kernel selection and allocation, on both sides.
        editor.edit(images[: min(args.batch_size, args.n)])
        paper_loop(pipe, images[:1], key)

        loop_s, loop_out, loop_mem = timed(lambda: paper_loop(pipe, images, key), device, args.repeats)
        batch_s, batch_out, batch_mem = timed(lambda: editor.edit(images), device, args.repeats)
        diff = np.abs(np.stack(loop_out).astype(np.int16) - np.stack(batch_out).astype(np.int16))

    result = {
        "pipeline": pipeline_name,
        "parameters": params,
        "device": device,
        "dtype": str(dtype).replace("torch.", ""),
        "machine": machine_description(device),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "n": args.n,
        "batch_size": args.batch_size,
        "resolution": args.resolution,
        "steps": args.steps,
        "repeats": args.repeats,
        "build_s": round(build_s, 2),
        "load_s": round(load_s, 2),
        "paper_loop": {"seconds": loop_s, "images_per_s": args.n / loop_s, "peak_gpu_gib": loop_mem},
        "editor_batched": {"seconds": batch_s, "images_per_s": args.n / batch_s, "peak_gpu_gib": batch_mem},
        "speedup": loop_s / batch_s,
        "max_abs_diff_uint8": int(diff.max()),
        "mean_abs_diff_uint8": float(diff.mean()),
        "command": "python bench/edit_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print_table(result)
    write_result(args.json, result)
    return result


def print_table(r: dict) -> None:
    mem = r["device"].startswith("cuda")
    print(f"pipeline: {r['pipeline']}, {r['parameters'] / 1e6:.1f}M parameters, {r['device']} {r['dtype']}")
    print(f"machine: {r['machine']}; torch {r['torch']}, diffusers {r['diffusers']}")
    print(f"{r['n']} images {r['resolution']}x{r['resolution']}, {r['steps']} steps, best of {r['repeats']} "
          f"(build {r['build_s']} s, load {r['load_s']} s)\n")
    head = "| method | images | seconds | images/s |" + (" peak GPU GiB |" if mem else "")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    rows = [("paper loop (1 image per call, fresh manual_seed)", r["paper_loop"]),
            (f"modellock editor (batch {r['batch_size']})", r["editor_batched"])]
    for name, m in rows:
        line = f"| {name} | {r['n']} | {m['seconds']:.2f} | {m['images_per_s']:.2f} |"
        print(line + (f" {m['peak_gpu_gib']:.2f} |" if mem else ""))
    print(f"\nspeed-up (editor / paper loop): {r['speedup']:.2f}x")
    print(f"outputs agree: max abs uint8 diff {r['max_abs_diff_uint8']}, mean {r['mean_abs_diff_uint8']:.4f}")


if __name__ == "__main__":
    from modellock.errors import ModelLockError

    try:
        main()
    except ModelLockError as e:
        sys.exit(f"error: {e}")
