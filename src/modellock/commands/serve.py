"""``modellock serve`` and ``modellock serve-token``: the HTTP service and its bearer tokens."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import INPUTS, RUN, app, fail, warn_if_readable

NETWORK = "Network and auth"
BATCHING = "Batching"
LIMITS = "Limits"
ANSWERS = "Answers"

_NEEDS_EXTRA = "modellock serve needs the serve extra: pip install 'modellock[serve]'"


@app.command()
def serve(
    model: str = typer.Option(..., "--model", "-m", help="Locked model folder or hub repo id.", rich_help_panel=INPUTS),
    key: Path = typer.Option(..., "--key", "-k", help="Key file; refused when it does not match the model.",
                             rich_help_panel=INPUTS),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (not loopback: needs --tokens).",
                             rich_help_panel=NETWORK),
    port: int = typer.Option(8000, help="Port (0: a free one, printed at start).", rich_help_panel=NETWORK),
    tokens: Optional[Path] = typer.Option(None, "--tokens", help="Tokens file (see `modellock serve-token add`); "
                                          "without it the service listens on loopback only.",
                                          rich_help_panel=NETWORK),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log a line per request.",
                                    rich_help_panel=NETWORK),
    max_batch: int = typer.Option(32, help="Images edited and predicted together, at most.", rich_help_panel=BATCHING),
    max_wait_ms: float = typer.Option(5.0, help="How long the first image of a batch waits for others.",
                                      rich_help_panel=BATCHING),
    max_queue: int = typer.Option(256, help="Images waiting, at most; more are answered 503 + Retry-After.",
                                  rich_help_panel=LIMITS),
    max_images: int = typer.Option(32, help="Images per request, at most.", rich_help_panel=LIMITS),
    max_pixels: int = typer.Option(4096 * 4096, help="Pixels per image, at most (checked before decoding).",
                                   rich_help_panel=LIMITS),
    max_body_mb: float = typer.Option(16.0, help="Request body size, at most (MiB).", rich_help_panel=LIMITS),
    timeout: float = typer.Option(30.0, help="Seconds a request may take before it is answered 504.",
                                  rich_help_panel=LIMITS),
    max_concurrency: int = typer.Option(128, help="Requests answered at once; more get 503 + Retry-After.",
                                        rich_help_panel=LIMITS),
    max_image_mb: Optional[float] = typer.Option(None, help="Size of one image as sent, at most (MiB; default: "
                                                 "the body limit).", rich_help_panel=LIMITS),
    max_request_pixels: Optional[int] = typer.Option(None, help="Decoded pixels of all images of a request, at "
                                                     "most (default: --max-pixels; read from headers: 413).",
                                                     rich_help_panel=LIMITS),
    max_queue_pixels: Optional[int] = typer.Option(None, help="Decoded pixels held by all requests together, at "
                                                   "most (default: 4 x --max-request-pixels; more: 503).",
                                                   rich_help_panel=LIMITS),
    images_per_minute: Optional[int] = typer.Option(None, help="Images a token may send per minute (a token's "
                                                    "line in --tokens may set its own; without --tokens: all "
                                                    "requests together); more: 429 + Retry-After.",
                                                    rich_help_panel=LIMITS),
    images_per_day: Optional[int] = typer.Option(None, help="Images a token may send per day (as above).",
                                                 rich_help_panel=LIMITS),
    output: str = typer.Option("probs", help="What an answer holds: label (class only), top-k (at most --top-k "
                               "classes with probabilities), probs (up to every class's probability).",
                               rich_help_panel=ANSWERS),
    top_k: int = typer.Option(3, "--top-k", help="Classes listed when a request gives no top_k; the most with "
                              "--output top-k.", rich_help_panel=ANSWERS),
    round_digits: Optional[int] = typer.Option(None, "--round", help="Round probabilities to N decimal digits.",
                                               rich_help_panel=ANSWERS),
    watermark: Optional[Path] = typer.Option(None, "--watermark", help="Answer a keyed share of images with a "
                                             "wrong class and record them in this folder (its secret made there, "
                                             "mode 0700), for `modellock verify --watermark` (classification).",
                                             rich_help_panel=ANSWERS),
    watermark_rate: float = typer.Option(0.01, "--watermark-rate", help="Share of images answered wrong on "
                                         "purpose (0 to 0.5): what the owner's users lose in accuracy.",
                                         rich_help_panel=ANSWERS),
    watermark_max: int = typer.Option(100_000, "--watermark-max", help="Watermarked queries recorded, at most "
                                      "(then answers stay watermarked, unrecorded).", rich_help_panel=ANSWERS),
    allowed_host: List[str] = typer.Option([], "--allowed-host", help="A host name the Host header may give, "
                                           "besides localhost, 127.0.0.1 and [::1] (repeatable; without --tokens "
                                           "other names get 421).", rich_help_panel=NETWORK),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, ... (default: cuda when present).",
                                         rich_help_panel=RUN),
):
    """Serve predictions of a locked model over HTTP: each image is edited with KEY on the server, never sent."""
    try:  # lazy: fastapi and uvicorn, an optional extra ([serve]), only when serving
        from ..serve.answers import Output
        from ..serve.auth import Quota
        from ..serve.limits import Limits
        from ..serve.server import listen, load_service, run
    except ImportError:
        fail(_NEEDS_EXTRA)
    try:
        limits = Limits(max_body_bytes=int(max_body_mb * 1024 * 1024), max_images=max_images, max_pixels=max_pixels,
                        timeout_s=timeout, max_queue=max_queue, max_concurrency=max_concurrency,
                        max_image_bytes=None if max_image_mb is None else int(max_image_mb * 1024 * 1024),
                        max_request_pixels=max_request_pixels, max_queue_pixels=max_queue_pixels)
    except ValueError as e:
        fail(f"limits: {e}")
    try:
        answers = Output(output, top_k, round_digits)
        quota = Quota(images_per_minute, images_per_day)
    except ValueError as e:
        fail(f"--output/--top-k/--round/--images-per-*: {e}")
    service = load_service(model, key, tokens, limits, max_batch, max_wait_ms, device, host, output=answers,
                           quota=quota, allowed_hosts=tuple(allowed_host), watermark=watermark,
                           watermark_rate=watermark_rate, watermark_max=watermark_max)
    warn_if_readable(key)
    sock = listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    where = f"[{bound_host}]" if ":" in bound_host else bound_host
    info = service.state.info
    typer.echo(f"serving {info['name']} ({info['task']}, {info['num_classes']} classes, editor {info['editor']}) "
               f"on http://{where}:{bound_port}", err=True)
    if tokens is None:
        typer.echo("auth: none: without --tokens every local user and process can call the service; it listens "
                   "on loopback only", err=True)
    else:
        typer.echo(f"auth: bearer tokens from {tokens} ({len(service.state.tokens)} tokens)", err=True)
    typer.echo(f"batching: up to {max_batch} images, waiting up to {max_wait_ms:g} ms; limits: {max_images} images "
               f"of {max_pixels:,} pixels ({limits.max_request_pixels:,} in all) and {max_body_mb:g} MiB per "
               f"request, {timeout:g} s, queue {max_queue} images and {limits.max_queue_pixels:,} pixels", err=True)
    quotas = ", ".join(f"{n} images per {w}" for n, w in ((images_per_minute, "minute"), (images_per_day, "day"))
                       if n) or "none"
    typer.echo(f"answers: {output}" + (f" (top {top_k})" if output == "top-k" else "") +
               (f", probabilities rounded to {round_digits} digits" if round_digits is not None else "") +
               f"; quota per {'token' if tokens is not None else 'service'}: {quotas}", err=True)
    marks = service.state.watermark
    if marks is not None:
        typer.echo(f"watermark: {marks.rate:.2%} of images answered with a wrong class on purpose, recorded in "
                   f"{watermark} ({marks.recorded} so far, at most {marks.max_records})", err=True)
    run(service, sock, graceful_s=timeout + 5.0, access_log=access_log)


token_app = typer.Typer(no_args_is_help=True, help="Make, list and remove the bearer tokens of `modellock serve`.")
app.add_typer(token_app, name="serve-token")


def _tokens(path: Path, missing_ok: bool = False):
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..serve.auth import TokenFile

    return TokenFile.load(path, missing_ok=missing_ok)


@token_app.command("add")
def token_add(
    tokens: Path = typer.Option(..., "--tokens", help="Tokens file (made when missing, mode 0600)."),
    name: str = typer.Option(..., "--name", help="Who or what the token is for."),
    per_minute: Optional[int] = typer.Option(None, help="Images this token may send per minute (default: the "
                                             "service's --images-per-minute)."),
    per_day: Optional[int] = typer.Option(None, help="Images per day (default: the service's --images-per-day)."),
):
    """Make a token: its hash goes into the tokens file, the token itself is printed once."""
    # lazy: the command's own work; --help and the key commands stay light (no torch)
    from ..serve.auth import Quota

    try:
        quota = Quota(per_minute, per_day)
    except ValueError as e:
        fail(f"--per-minute/--per-day: {e}")
    token = _tokens(tokens, missing_ok=True).add(name, quota)
    typer.echo(token)
    typer.echo(f"added token {name!r} to {tokens}: the line above is shown once and stored nowhere", err=True)


@token_app.command("list")
def token_list(tokens: Path = typer.Option(..., "--tokens", help="Tokens file.")):
    """The names of the tokens in a tokens file."""
    for name in _tokens(tokens).hashes:
        typer.echo(name)


@token_app.command("remove")
def token_remove(
    tokens: Path = typer.Option(..., "--tokens", help="Tokens file."),
    name: str = typer.Option(..., "--name", help="The token to remove."),
):
    """Remove a token (a running service reads the file at start: restart it)."""
    _tokens(tokens).remove(name)
    typer.echo(f"removed token {name!r} from {tokens}", err=True)
