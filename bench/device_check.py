"""The GPU check of issue 13, in one go (run through bench/device_check.sh, which installs what is missing).

1. InstructPix2Pix with the real architecture (SD 1.5: 1.07B parameters, random weights built in code, saved
   and loaded back through ``from_pretrained``), bf16, 256x256, 5 steps, the paper's guidance (4.5 text,
   1.5 image), seed 1024: the public code's loop (one pipeline call per image, fresh ``manual_seed``)
   against the batched editor at batch 8 / 16 / 32 / 64 on the same images: images/s, peak GPU memory,
   the largest uint8 difference from the loop's edits, and the UNet's model FLOP utilisation (MFU): the
   UNet's FLOPs (counted by ``torch.utils.flop_counter`` on the pipeline's own call shape: 3 x batch for
   the two guidances) per second of the whole edit, and of the UNet alone, over the GPU's dense bf16 peak.
2. The edit stage on a folder (256 JPEGs of 256x256): sequential vs pipelined (reader and writer processes).
3. Lock-training throughput of ``vit_base_patch16_224`` at 224 px in bf16 through ``modellock.train.fit``
   (images/s in steady state: the difference of two runs of different lengths, so start-up cancels).

Goals (issue 13): batched >= 5x the per-image loop; UNet MFU >= 40 %.

``--tiny`` runs every step at toy sizes (tiny pipeline, 32x32, tiny-cnn) so the script can be checked on a
CPU in a minute. Results: a markdown table on stdout, JSON in ``--out`` (and in ``$OUT`` when set).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edit_pipeline import make_sources, run as run_edit_stage, same_images  # noqa: E402
from edit_throughput import machine_description, paper_loop, sync, timed  # noqa: E402

PROMPT = "turn it into an oil pastel drawing"  # a benchmark prompt, not anybody's key
# dense bf16 tensor-core peaks from the vendors' datasheets (TFLOP/s), matched against the device name
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "GH200": 989.0,
                    "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "RTX 4090": 165.0}
FULL = dict(resolution=256, steps=5, loop_images=16, batches=(8, 16, 32, 64), batched_images=128,
            folder_images=256, train_model="vit_base_patch16_224", train_size=224, train_batch=128,
            train_steps=(10, 40), train_workers=8)
TINY = dict(resolution=32, steps=5, loop_images=4, batches=(2, 4), batched_images=8, folder_images=16,
            train_model="tiny-cnn", train_size=32, train_batch=16, train_steps=(4, 24), train_workers=0)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="toy sizes: checks the script on a CPU")
    p.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak (default: by name)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: pix2pix, folder, train")
    p.add_argument("--out", default="bench-output/device-check", help="folder for device_check.json")
    return p.parse_args(argv)


def peak_tflops(device: str, given: float | None) -> float | None:
    import torch

    if given or not device.startswith("cuda"):
        return given
    name = torch.cuda.get_device_name(torch.device(device))
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def unet_flops(pipe, batch: int, resolution: int, device: str) -> float:
    """FLOPs of one UNet call as the pipeline makes it for ``batch`` images (3 x batch: image, text and no
    guidance), counted by torch's FlopCounterMode on the real module."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    unet = pipe.unet
    side = resolution // pipe.vae_scale_factor
    sample = torch.randn(3 * batch, unet.config.in_channels, side, side, device=device, dtype=unet.dtype)
    text = torch.randn(3 * batch, pipe.tokenizer.model_max_length, unet.config.cross_attention_dim,
                       device=device, dtype=unet.dtype)
    counter = FlopCounterMode(display=False)
    # the math attention kernel is made of matmuls the counter sees on every device (a CPU's fused kernel is not)
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
        unet(sample, 999, encoder_hidden_states=text)
    return float(counter.get_total_flops())


def unet_alone_seconds(pipe, batch: int, resolution: int, device: str, iters: int) -> float:
    """Seconds per UNet call at the pipeline's shape for ``batch`` images (mean of ``iters`` after a warm-up)."""
    import torch

    unet = pipe.unet
    side = resolution // pipe.vae_scale_factor
    sample = torch.randn(3 * batch, unet.config.in_channels, side, side, device=device, dtype=unet.dtype)
    text = torch.randn(3 * batch, pipe.tokenizer.model_max_length, unet.config.cross_attention_dim,
                       device=device, dtype=unet.dtype)
    with torch.inference_mode():
        unet(sample, 999, encoder_hidden_states=text)
        sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            unet(sample, 999, encoder_hidden_states=text)
        sync(device)
    return (time.perf_counter() - start) / iters


def check_pix2pix(cfg: dict, device: str | None, peak: float | None, tiny: bool, tmp: Path, log) -> dict:
    from modellock.editors.instruct_pix2pix import InstructPix2PixEditor
    from modellock.keys import Key
    from modellock.testing import build_full_size_pix2pix, build_tiny_pix2pix, sample_images

    start = time.perf_counter()
    model = (build_tiny_pix2pix if tiny else build_full_size_pix2pix)(tmp / "pipeline")
    build_s = time.perf_counter() - start
    gc.collect()
    key = Key.create("instruct-pix2pix", PROMPT, model=str(model), resolution=cfg["resolution"], steps=cfg["steps"],
                     seed=1024, guidance=4.5, image_guidance=1.5, alpha=1.0)  # alpha 1: compare raw edits
    editor = InstructPix2PixEditor(key, device=device)
    start = time.perf_counter()
    pipe = editor.pipe
    load_s = time.perf_counter() - start
    device, dtype = str(editor.device), str(editor.dtype).replace("torch.", "")
    params = sum(p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters())
    log(f"pix2pix: {params / 1e6:.0f}M parameters on {device} {dtype}; built in {build_s:.0f} s, loaded in {load_s:.0f} s")
    res, steps = cfg["resolution"], cfg["steps"]
    images = sample_images(cfg["batched_images"], (res, res), seed=0)
    loop_images = images[:cfg["loop_images"]]

    paper_loop(pipe, loop_images[:1], key)  # warm-up
    loop_s, loop_out, loop_mem = timed(lambda: paper_loop(pipe, loop_images, key), device, 1)
    per_call = {b: unet_flops(pipe, b, res, device) for b in (1, *cfg["batches"])}
    loop_rate = len(loop_images) / loop_s
    result = {"parameters": params, "device": device, "dtype": dtype, "build_s": build_s, "load_s": load_s,
              "resolution": res, "steps": steps, "unet_gflops_per_call_batch1": per_call[1] / 1e9,
              "paper_loop": {"images": len(loop_images), "seconds": loop_s, "images_per_s": loop_rate,
                             "peak_gpu_gib": loop_mem,
                             "unet_mfu": _mfu(per_call[1] * steps * len(loop_images) / loop_s, peak)},
              "batched": []}
    log(f"paper loop: {loop_rate:.2f} images/s")
    for b in cfg["batches"]:
        editor.batch_size = b
        editor.edit(images[:b])  # warm-up at this shape
        seconds, out, mem = timed(lambda: editor.edit(images), device, 1)
        diff = np.abs(np.stack(out[:len(loop_out)]).astype(np.int16) - np.stack(loop_out).astype(np.int16))
        flops = per_call[b] / b * steps * len(images)  # UNet FLOPs of the whole run
        alone = unet_alone_seconds(pipe, b, res, device, iters=3 if tiny else 10)
        row = {"batch": b, "images": len(images), "seconds": seconds, "images_per_s": len(images) / seconds,
               "speedup_vs_loop": len(images) / seconds / loop_rate, "peak_gpu_gib": mem,
               "max_abs_diff_uint8": int(diff.max()), "unet_tflops_in_edit": flops / seconds / 1e12,
               "unet_mfu": _mfu(flops / seconds, peak), "unet_alone_ms": alone * 1e3,
               "unet_alone_mfu": _mfu(per_call[b] / alone, peak)}
        result["batched"].append(row)
        log(f"batch {b}: {row['images_per_s']:.2f} images/s ({row['speedup_vs_loop']:.1f}x), "
            f"max diff {row['max_abs_diff_uint8']}, UNet MFU {row['unet_mfu']}")
    result["editor"] = editor
    return result


def _mfu(flops_per_s: float, peak: float | None) -> float | None:
    return None if not peak else flops_per_s / (peak * 1e12)


def check_folder(cfg: dict, editor, batch: int, tmp: Path, log) -> dict:
    """The edit stage on a folder of JPEGs: sequential (one process) vs pipelined (readers + writers)."""
    from modellock.data import open_source

    res = cfg["resolution"]
    split = open_source(make_sources(tmp / "folder-src", cfg["folder_images"], res)).split("train")
    out = {}
    for mode in ("sequential", "pipelined", "sequential", "pipelined"):
        seconds = run_edit_stage(split, editor.key, editor, tmp / mode, batch, None, mode == "sequential")
        out.setdefault(mode, []).append(seconds)
    result = {"images": len(split), "size": res, "batch": batch,
              "images_per_s": {m: len(split) / min(t) for m, t in out.items()},
              "identical_output": same_images(tmp / "sequential", tmp / "pipelined")}
    result["speedup"] = result["images_per_s"]["pipelined"] / result["images_per_s"]["sequential"]
    log(f"edit folder: sequential {result['images_per_s']['sequential']:.1f}, pipelined "
        f"{result['images_per_s']['pipelined']:.1f} images/s")
    return result


class _Inputs:
    """``n`` training pairs from 64 random images (no decoding: the model and the loader's transfer are measured)."""

    def __init__(self, n: int, size: int):
        import torch

        self.n, self.images = n, torch.randn(64, 3, size, size)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.images[i % 64], i % 1000


def check_training(cfg: dict, log) -> dict:
    """Images/s of ``fit`` in bf16: (images of the long run - the short one) / (time difference), so that the
    set-up of each run cancels out."""
    import torch

    from modellock.nets.backbones import create_backbone
    from modellock.train import TrainConfig, fit

    size, batch = cfg["train_size"], cfg["train_batch"]
    times = {}
    for steps in cfg["train_steps"]:
        torch.manual_seed(0)
        model = create_backbone(cfg["train_model"], 1000, image_size=size)
        config = TrainConfig(epochs=1, batch_size=batch, lr=1e-4, warmup_epochs=0.0, num_workers=cfg["train_workers"],
                             mixed_precision="bf16")
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        fit(model, _Inputs(steps * batch, size), config, desc="train-check", progress=False)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times[steps] = time.perf_counter() - start
        del model
        gc.collect()
    (short, t_short), (long, t_long) = sorted(times.items())
    rate = (long - short) * batch / (t_long - t_short) if t_long > t_short else None
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    log(f"training {cfg['train_model']}: {rate or 0:.0f} images/s")
    return {"model": cfg["train_model"], "image_size": size, "batch": batch, "mixed_precision": "bf16",
            "loader_workers": cfg["train_workers"], "steps": list(times), "seconds": list(times.values()),
            "images_per_s": rate, "peak_gpu_gib": peak}


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import diffusers
    import torch

    t0 = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {message}", flush=True)

    cfg = TINY if args.tiny else FULL
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    peak = peak_tflops(device, args.peak_tflops)
    skip = {s for s in args.skip.split(",") if s}
    result = {"tiny": args.tiny, "machine": machine_description(device), "torch": torch.__version__,
              "diffusers": diffusers.__version__, "peak_bf16_tflops": peak,
              "command": "bash bench/device_check.sh " + " ".join(sys.argv[1:] if argv is None else argv)}
    log(f"{result['machine']}; torch {torch.__version__}, diffusers {diffusers.__version__}, peak {peak} TFLOP/s")
    tmp = Path(tempfile.mkdtemp(prefix="modellock-device-check-"))
    os.environ["MODELLOCK_CACHE"] = str(tmp / "cache")
    try:
        if "pix2pix" not in skip:
            pix = check_pix2pix(cfg, device, peak, args.tiny, tmp, log)
            editor = pix.pop("editor")
            result["pix2pix"] = pix
            if "folder" not in skip:
                best = max(pix["batched"], key=lambda r: r["images_per_s"])["batch"]
                result["edit_folder"] = check_folder(cfg, editor, best, tmp, log)
            editor.close()
            from modellock.editors import instruct_pix2pix

            instruct_pix2pix._PIPELINES.clear()  # free the GPU for training
            del editor
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if "train" not in skip:
            result["training"] = check_training(cfg, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["seconds"] = time.perf_counter() - t0
    result["goals"] = goals(result) if not args.tiny else None
    write(result, args.out)
    print_tables(result)
    return result


def goals(r: dict) -> dict:
    pix = r.get("pix2pix")
    if not pix:
        return {}
    best = max(pix["batched"], key=lambda row: row["images_per_s"])
    mfu = max((row["unet_mfu"] or 0.0) for row in pix["batched"])
    return {"batched_vs_loop": best["speedup_vs_loop"], "batched_vs_loop_met": best["speedup_vs_loop"] >= 5.0,
            "unet_mfu": mfu, "unet_mfu_met": mfu >= 0.40}


def write(result: dict, out: str) -> None:
    text = json.dumps(result, indent=2) + "\n"
    for folder in filter(None, (out, os.environ.get("OUT"))):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "device_check.json").write_text(text)


def print_tables(r: dict) -> None:
    pct = lambda x: "-" if x is None else f"{100 * x:.1f} %"  # noqa: E731
    gib = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
    print(f"\nmachine: {r['machine']}; torch {r['torch']}, diffusers {r['diffusers']}; "
          f"peak bf16 {r['peak_bf16_tflops']} TFLOP/s; {r['seconds']:.0f} s in all\n")
    pix = r.get("pix2pix")
    if pix:
        print(f"InstructPix2Pix, {pix['parameters'] / 1e6:.0f}M parameters, {pix['device']} {pix['dtype']}, "
              f"{pix['resolution']}x{pix['resolution']}, {pix['steps']} steps; UNet "
              f"{pix['unet_gflops_per_call_batch1']:.4g} GFLOP per call for one image (x3 guidance)\n")
        print("| method | images | images/s | vs loop | peak GPU GiB | max uint8 diff | UNet MFU (edit) | "
              "UNet alone ms | UNet MFU (alone) |")
        print("|---|---|---|---|---|---|---|---|---|")
        loop = pix["paper_loop"]
        print(f"| public loop (1 image per call) | {loop['images']} | {loop['images_per_s']:.2f} | 1.0x | "
              f"{gib(loop['peak_gpu_gib'])} | - | {pct(loop['unet_mfu'])} | - | - |")
        for row in pix["batched"]:
            print(f"| editor, batch {row['batch']} | {row['images']} | {row['images_per_s']:.2f} | "
                  f"{row['speedup_vs_loop']:.1f}x | {gib(row['peak_gpu_gib'])} | {row['max_abs_diff_uint8']} | "
                  f"{pct(row['unet_mfu'])} | {row['unet_alone_ms']:.1f} | {pct(row['unet_alone_mfu'])} |")
    folder = r.get("edit_folder")
    if folder:
        print(f"\nedit stage on {folder['images']} JPEGs of {folder['size']}x{folder['size']} (batch {folder['batch']}): "
              f"sequential {folder['images_per_s']['sequential']:.1f} images/s, pipelined "
              f"{folder['images_per_s']['pipelined']:.1f} ({folder['speedup']:.2f}x); same PNGs: "
              f"{folder['identical_output']}")
    train = r.get("training")
    if train:
        rate = "-" if train["images_per_s"] is None else f"{train['images_per_s']:.0f}"
        print(f"\nlock training, {train['model']} at {train['image_size']} px, batch {train['batch']}, bf16, "
              f"{train['loader_workers']} loader workers: {rate} images/s (peak GPU {gib(train['peak_gpu_gib'])} GiB)")
    if r.get("goals"):
        g = r["goals"]
        print(f"\ngoals: batched >= 5x loop: {g['batched_vs_loop']:.1f}x "
              f"({'met' if g['batched_vs_loop_met'] else 'NOT met'}); UNet MFU >= 40 %: {pct(g['unet_mfu'])} "
              f"({'met' if g['unet_mfu_met'] else 'NOT met'})")


if __name__ == "__main__":
    main()
