"""``modellock serve`` and ``modellock serve-token``: the HTTP service and its bearer tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import INPUTS, RUN, app, fail, warn_if_readable

NETWORK = "Network and auth"
BATCHING = "Batching"
LIMITS = "Limits"

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
    device: Optional[str] = typer.Option(None, help="cpu, cuda, ... (default: cuda when present).",
                                         rich_help_panel=RUN),
):
    """Serve predictions of a locked model over HTTP: each image is edited with KEY on the server, never sent."""
    try:
        from ..serve.limits import Limits
        from ..serve.server import listen, load_service, run
    except ImportError:
        fail(_NEEDS_EXTRA)
    try:
        limits = Limits(max_body_bytes=int(max_body_mb * 1024 * 1024), max_images=max_images, max_pixels=max_pixels,
                        timeout_s=timeout, max_queue=max_queue, max_concurrency=max_concurrency)
    except ValueError as e:
        fail(f"limits: {e}")
    service = load_service(model, key, tokens, limits, max_batch, max_wait_ms, device, host)
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
               f"of {max_pixels:,} pixels and {max_body_mb:g} MiB per request, {timeout:g} s, queue {max_queue}",
               err=True)
    run(service, sock, graceful_s=timeout + 5.0, access_log=access_log)


token_app = typer.Typer(no_args_is_help=True, help="Make, list and remove the bearer tokens of `modellock serve`.")
app.add_typer(token_app, name="serve-token")


def _tokens(path: Path, missing_ok: bool = False):
    from ..serve.auth import TokenFile

    return TokenFile.load(path, missing_ok=missing_ok)


@token_app.command("add")
def token_add(
    tokens: Path = typer.Option(..., "--tokens", help="Tokens file (made when missing, mode 0600)."),
    name: str = typer.Option(..., "--name", help="Who or what the token is for."),
):
    """Make a token: its hash goes into the tokens file, the token itself is printed once."""
    token = _tokens(tokens, missing_ok=True).add(name)
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
