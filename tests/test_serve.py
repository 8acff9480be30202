"""`modellock serve`: dynamic batching, the HTTP API in process, and the real server process over HTTP."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from image_cases import image_bytes, png_with_header_size
from modellock.keys import Key
from modellock.testing import build_tiny_locked_model, sample_images

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "with oil pastel"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A key file, an untrained locked classifier and segmenter for it, and a tokens file with one token."""
    from modellock.serve.auth import TokenFile

    root = tmp_path_factory.mktemp("serve")
    key = Key.create("keyed-filter", PROMPT)
    key.save(root / "key.toml")
    build_tiny_locked_model(root / "model", key)
    build_tiny_locked_model(root / "segmodel", key, task="segmentation")
    token = TokenFile(path=root / "tokens.txt").add("alice")
    return {"root": root, "key": key, "model": root / "model", "segmodel": root / "segmodel",
            "tokens": root / "tokens.txt", "token": token}


def _predictor(folder, key, **options):
    from modellock.model_folder import LockedModel

    return LockedModel.from_pretrained(folder, device="cpu").unlock(key, device="cpu", **options)


def _client(predictor, **options):
    from fastapi.testclient import TestClient

    from modellock.serve import create_app

    return TestClient(create_app(predictor, **options), base_url="http://127.0.0.1:8000", raise_server_exceptions=False)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _same_prediction(a: dict, b: dict) -> None:
    """Same class and top classes; probabilities equal up to float32 rounding of the model's forward pass."""
    n = min(len(a["top"]), len(b["top"]))
    assert a["class"] == b["class"] and [t["class"] for t in a["top"][:n]] == [t["class"] for t in b["top"][:n]]
    assert a["probability"] == pytest.approx(b["probability"], abs=1e-6)


# ------------------------------------------------------------------------------------------- batching
def _batched(predictor, requests: list[list[np.ndarray]], max_batch: int = 32, max_wait_s: float = 0.05):
    """Submit ``requests`` at once to a Batcher over ``predictor``; returns (results, batch sizes, editor calls)."""
    from modellock.serve.app import _batch_function
    from modellock.serve.batcher import Batcher

    calls, sizes = [], []
    edit = predictor.editor.edit
    predictor.editor.edit = lambda images: calls.append(len(images)) or edit(images)
    batcher = Batcher(_batch_function(predictor), max_batch=max_batch, max_wait_s=max_wait_s,
                      on_batch=lambda n, s: sizes.append(n))

    async def main():
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(r) for r in requests))
        finally:
            await batcher.stop()

    try:
        return asyncio.run(main()), sizes, calls
    finally:
        predictor.editor.edit = edit


def test_concurrent_requests_share_one_editor_call_and_results_do_not_depend_on_the_batch(served):
    predictor = _predictor(served["model"], served["key"])
    images = sample_images(7, (40, 52), seed=3) + sample_images(3, (64, 64), seed=4)
    requests = [[im] for im in images[:7]] + [images[7:]]
    results, sizes, calls = _batched(predictor, requests)
    assert sizes == [10] and calls == [10]  # every request's images in one batch, one editor call
    alone = [predictor.predict([im], top_k=3)[0] for im in images]
    for got, want in zip([r for req in results for r in req], alone):
        _same_prediction(got, want)
    # the edit itself is bit-for-bit the same alone and in a batch
    batch_edit = predictor.edit(images)
    assert all(np.array_equal(predictor.edit([im])[0], e) for im, e in zip(images, batch_edit))
    # max_batch splits the queue into batches of at most that many images
    _, sizes, calls = _batched(predictor, requests, max_batch=4)
    assert sizes == [4, 4, 2] and calls == [4, 4, 2]


def test_diffusion_editor_batches_and_results_do_not_depend_on_the_batch(tmp_path, tiny_model):
    key = Key.create("instruct-pix2pix", "turn it into an oil pastel drawing", model=str(tiny_model),
                     resolution=32, steps=2)
    build_tiny_locked_model(tmp_path / "model", key)
    predictor = _predictor(tmp_path / "model", key, batch_size=8)
    images = sample_images(5, (32, 32), seed=5)
    results, sizes, calls = _batched(predictor, [[im] for im in images])
    assert sizes == [5] and calls == [5]
    for (got,), im in zip(results, images):
        _same_prediction(got, predictor.predict([im], top_k=3)[0])
    together = predictor.edit(images)
    for im, e in zip(images, together):  # the editor's promise: at most 1/255 of kernel rounding
        assert np.abs(predictor.edit([im])[0].astype(int) - e.astype(int)).max() <= 1


def test_batcher_bounds_its_queue_skips_cancelled_requests_and_isolates_a_failing_image():
    from modellock.serve.batcher import Batcher, QueueFull

    release, ran = threading.Event(), []

    def run(images):
        release.wait(10)
        ran.append([int(a[0, 0, 0]) for a in images])
        if any(a[0, 0, 0] == 13 for a in images):
            raise ValueError("bad image")
        return [int(a[0, 0, 0]) for a in images]

    def img(v):
        return np.full((2, 2, 3), v, np.uint8)

    batcher = Batcher(run, max_batch=4, max_wait_s=0.0, max_queue=3)

    async def main():
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit([img(1)]))  # taken by the worker, which then blocks
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(batcher.submit([img(2), img(3)]))
        cancelled = asyncio.ensure_future(batcher.submit([img(4)]))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull) as full:
            await batcher.submit([img(5)])
        assert full.value.retry_after >= 1 and batcher.depth == 3
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert batcher.depth == 2
        bad = asyncio.ensure_future(batcher.submit([img(13)]))  # room again once the cancelled one leaves
        await asyncio.sleep(0.05)
        release.set()
        assert await first == [1] and await waiting == [2, 3]
        with pytest.raises(ValueError, match="bad image"):
            await bad
        await batcher.stop()

    asyncio.run(main())
    assert ran[0] == [1] and 4 not in sum(ran, [])  # the cancelled image never ran
    assert [2, 3, 13] in ran and [2] in ran and [3] in ran  # the failed batch, then each image alone


# ------------------------------------------------------------------------------------------- HTTP API
def _check_error(response, status: int, *needles: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["status"] == status and "Traceback" not in response.text
    for n in needles:
        assert n in body["error"]["message"], body


def test_api_predicts_from_multipart_and_json_and_describes_itself(served):
    from modellock.serve import Limits

    predictor = _predictor(served["model"], served["key"])
    png = image_bytes("RGB", (30, 20), seed=1)
    with _client(predictor, limits=Limits(max_images=4)) as client:
        r = client.post("/v1/predict", files=[("image", ("a.png", png)), ("image", ("b.png", png))],
                        data={"top_k": "2"})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert r.json()["task"] == "classification" and [x["image"] for x in results] == ["a.png", "b.png"]
        assert len(results[0]["top"]) == 2 and results[0]["class"] in ("circle", "square", "triangle")
        j = client.post("/v1/predict", json={"images": [_b64(png), "data:image/png;base64," + _b64(png)]})
        assert j.status_code == 200 and [x["image"] for x in j.json()["results"]] == ["images[0]", "images[1]"]
        _same_prediction(j.json()["results"][1], results[0])
        _same_prediction(results[0], predictor.predict([Image.open(io.BytesIO(png))], top_k=3)[0])
        info = client.get("/v1/model").json()
        assert info["classes"] == ["circle", "square", "triangle"] and info["editor"] == "keyed-filter"
        assert info["limits"]["max_images"] == 4 and info["auth"].startswith("none")
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json()["status"] == "ready"
        schema = client.get("/openapi.json").json()
        body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
        assert {"multipart/form-data", "application/json"} <= set(body)
        metrics = client.get("/metrics").text
        for name in ("modellock_requests_total", "modellock_request_errors_total", "modellock_batch_size_bucket",
                     "modellock_queue_depth", "modellock_request_latency_seconds_bucket"):
            assert name in metrics
        assert 'modellock_requests_total{code="200",method="POST",route="/v1/predict"} 2.0' in metrics
        everything = json.dumps(info) + metrics + r.text + json.dumps(schema)
    cfg = json.loads((served["model"] / "config.json").read_text())
    assert PROMPT not in everything and cfg["lock"]["fingerprint"] not in everything


def test_api_segmentation_returns_class_areas_and_a_mask_png(served):
    predictor = _predictor(served["segmodel"], served["key"])
    with _client(predictor) as client:
        r = client.post("/v1/predict", files={"image": ("scene.png", image_bytes("RGB", (40, 24)))})
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    mask = Image.open(io.BytesIO(base64.b64decode(result["mask_png"])))
    assert mask.mode == "P" and mask.size == (40, 24) == (result["width"], result["height"])
    values = np.asarray(mask)
    assert values.max() < 3 and abs(sum(result["class_areas"].values()) - 1) < 1e-6
    direct = predictor.segment([np.asarray(Image.open(io.BytesIO(image_bytes("RGB", (40, 24)))).convert("RGB"))])[0]
    assert np.array_equal(values, direct["mask"])


def test_api_refuses_bad_requests_with_one_json_error(served):
    from modellock.serve import Limits

    predictor = _predictor(served["model"], served["key"])
    limits = Limits(max_images=2, max_pixels=64 * 64, max_body_bytes=50_000)
    png = image_bytes("RGB", (8, 8))
    with _client(predictor, limits=limits) as client:
        post = client.post
        _check_error(post("/v1/predict", content=b"hello", headers={"content-type": "text/plain"}), 415)
        _check_error(post("/v1/predict", json={"images": []}), 422, "no images")
        _check_error(post("/v1/predict", json={"pictures": [_b64(png)]}), 422, "images")
        _check_error(post("/v1/predict", json={"images": [_b64(png)] * 3}), 413, "3 images", "limit of 2")
        _check_error(post("/v1/predict", json={"images": ["not base64!"]}), 400, "images[0]", "base64")
        _check_error(post("/v1/predict", json={"images": [_b64(png)], "top_k": 9}), 422, "top_k")
        _check_error(post("/v1/predict", content=b"{nope", headers={"content-type": "application/json"}), 400)
        _check_error(post("/v1/predict", files={"image": ("big.png", image_bytes("RGB", (80, 80)))}), 413,
                     "big.png", "80x80")
        _check_error(post("/v1/predict", files={"image": ("bomb.png", png_with_header_size(20000, 20000))}), 413,
                     "bomb.png", "400,000,000 pixels", "limit of 4,096")
        _check_error(post("/v1/predict", files={"image": ("cut.png", png[: len(png) // 2])}), 400, "cut.png")
        _check_error(post("/v1/predict", files={"image": ("key.toml", b"prompt = 'x'")}), 400, "not an image")
        _check_error(post("/v1/predict", files={"image": ("empty.png", b"")}), 400, "empty")
        _check_error(post("/v1/predict", content=b"x" * 60_000, headers={"content-type": "application/json"}), 413,
                     "50,000 bytes")
        _check_error(client.get("/v1/nothing"), 404)
        _check_error(client.delete("/v1/predict"), 405)
        metrics = client.get("/metrics").text
    for code in ("400", "413", "415", "422"):
        assert f'modellock_request_errors_total{{code="{code}"}}' in metrics


def test_api_token_auth(served):
    from modellock.serve import TokenFile

    predictor = _predictor(served["model"], served["key"])
    tokens = TokenFile.load(served["tokens"])
    body = {"images": [_b64(image_bytes())]}
    with _client(predictor, tokens=tokens) as client:
        _check_error(client.post("/v1/predict", json=body), 401, "bearer token")
        wrong = client.post("/v1/predict", json=body, headers={"Authorization": "Bearer mlk_" + "x" * 43})
        _check_error(wrong, 401)
        assert wrong.headers["www-authenticate"] == "Bearer"
        _check_error(client.get("/v1/model", headers={"Authorization": "Basic " + served["token"]}), 401)
        ok = client.post("/v1/predict", json=body, headers={"Authorization": f"Bearer {served['token']}"})
        assert ok.status_code == 200 and served["token"] not in ok.text
        assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200
    # only hashes are on disk
    assert served["token"] not in served["tokens"].read_text() and oct(served["tokens"].stat().st_mode)[-3:] == "600"


def test_api_queue_full_is_503_with_retry_after_and_slow_batches_time_out(served):
    from modellock.serve import Limits

    predictor = _predictor(served["model"], served["key"])
    gate = threading.Event()
    with _client(predictor, limits=Limits(max_queue=1, timeout_s=1.0)) as client:
        batcher = client.app.state.batcher
        run = batcher.run_batch
        batcher.run_batch = lambda images: gate.wait(20) and run(images)
        body = {"images": [_b64(image_bytes())]}
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(client.post("/v1/predict", json=body)))
                   for _ in range(2)]
        for t in threads:  # the first is taken into a (blocked) batch, the second waits in the queue
            t.start()
            time.sleep(0.3)
        full = client.post("/v1/predict", json=body)
        _check_error(full, 503, "busy")
        assert int(full.headers["retry-after"]) >= 1
        for t in threads:
            t.join()
        for answer in answers:
            _check_error(answer, 504, "timeout of 1 s")
        gate.set()


# ------------------------------------------------------------------------------------------- what a request may cost
def _bomb_png(side: int = 4096) -> bytes:
    """A 1-bit black PNG of side x side pixels: about 2 KB sent, 48 MiB once decoded to RGB."""
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:  # a worker thread
        return False


def _record(monkeypatch, target, name: str, calls: list, call_through: bool = True) -> None:
    """Replace ``target.name`` by a wrapper that appends, per call, whether it ran on the event loop."""
    real = getattr(target, name)

    def wrapper(*args, **kwargs):
        calls.append(_on_event_loop())
        if not call_through:
            raise RuntimeError(f"{name} was called")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)


def test_a_pixel_bomb_request_is_refused_from_its_headers_without_decoding(served, monkeypatch):
    import modellock.serve.limits as service_limits
    from modellock.serve import Limits

    bomb = _bomb_png()
    assert Image.open(io.BytesIO(bomb)).size == (4096, 4096) and 32 * len(bomb) < 100_000  # 32 of them: < 100 KB
    decoded, headers = [], []
    _record(monkeypatch, service_limits, "decode_image", decoded, call_through=False)
    _record(monkeypatch, service_limits, "image_size", headers)
    with _client(_predictor(served["model"], served["key"]), limits=Limits()) as client:  # the default limits
        r = client.post("/v1/predict", files=[("image", (f"{i}.png", bomb)) for i in range(32)])
        _check_error(r, 413, "32 images of 536,870,912 pixels in all", "limit of 16,777,216 pixels per request")
        j = client.post("/v1/predict", json={"images": [_b64(bomb)] * 32})
        _check_error(j, 413, "536,870,912 pixels in all")
        assert client.app.state.budget.held == 0
    assert decoded == [] and len(headers) == 64 and not any(headers)  # headers read on worker threads only


def test_many_large_requests_at_once_hold_no_more_than_the_queue_pixel_budget(served, monkeypatch):
    import modellock.serve.limits as service_limits
    from modellock.serve import Limits

    bomb, decoded, gate = _bomb_png(), [], threading.Event()
    _record(monkeypatch, service_limits, "decode_image", decoded)
    with _client(_predictor(served["model"], served["key"]), limits=Limits()) as client:
        budget, batcher = client.app.state.budget, client.app.state.batcher
        assert budget.limit == 4 * 4096 * 4096
        held, reserve = [], budget.reserve
        budget.reserve = lambda n: (reserve(n), held.append(budget.held))[0]
        run = batcher.run_batch
        batcher.run_batch = lambda images: gate.wait(60) and run(images)  # batches wait: requests hold pixels
        answers = []
        threads = [threading.Thread(target=lambda i=i: answers.append(
            client.post("/v1/predict", files={"image": (f"{i}.png", bomb)}))) for i in range(10)]
        for t in threads:
            t.start()
        deadline = time.time() + 60
        while len(answers) < 6 and time.time() < deadline:
            time.sleep(0.05)
        refused = list(answers)
        gate.set()
        for t in threads:
            t.join()
        metrics = client.get("/metrics").text
    assert len(refused) == 6
    for r in refused:
        _check_error(r, 503, "decoded pixels held", "limit 67,108,864")
        assert int(r.headers["retry-after"]) >= 1
    assert sorted(r.status_code for r in answers) == [200] * 4 + [503] * 6
    assert len(decoded) == 4 and not any(decoded) and max(held) <= budget.limit  # decoded: the admitted ones
    assert budget.held == 0 and "modellock_pixels_held 0.0" in metrics


def test_json_images_are_counted_and_sized_before_base64_decoding_and_decoded_off_the_event_loop(served,
                                                                                                    monkeypatch):
    import modellock.serve.limits as service_limits
    from modellock.serve import Limits

    b64decoded, decoded = [], []
    _record(monkeypatch, base64, "b64decode", b64decoded)
    _record(monkeypatch, service_limits, "decode_image", decoded)
    png = image_bytes("RGB", (16, 12))
    limits = Limits(max_images=4, max_image_bytes=2_000)
    with _client(_predictor(served["model"], served["key"]), limits=limits) as client:
        _check_error(client.post("/v1/predict", json={"images": [_b64(png)] * 5}), 413, "5 images", "limit of 4")
        assert b64decoded == []  # counted before any entry was decoded
        big = _b64(b"\0" * 10_000)
        _check_error(client.post("/v1/predict", json={"images": [_b64(png), big]}), 413, "images[1]",
                     "2,000 bytes per image")
        _check_error(client.post("/v1/predict", json={"images": ["!!"]}), 400, "images[0]", "not valid base64")
        _check_error(client.post("/v1/predict", content=b"[" * 100_000, headers={"content-type": "application/json"}),
                     400, "nested too deeply")
        assert b64decoded == [False] and decoded == []  # counted and sized first: only "!!" was decoded (and bad)
        _check_error(client.post("/v1/predict", files={"image": ("big.png", image_bytes("RGB", (64, 64)))}), 413,
                     "big.png", "2,000 bytes per image")
        r = client.post("/v1/predict", json={"images": [_b64(png), _b64(png)]})
        assert r.status_code == 200, r.text
    assert b64decoded == [False] * 3 and decoded == [False, False]


def test_loopback_service_answers_only_requests_whose_host_names_the_loopback(served):
    from modellock.serve import TokenFile

    predictor = _predictor(served["model"], served["key"])
    with _client(predictor, allowed_hosts=("model.lan",)) as client:
        for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:80", "[::1]:8000", "model.lan:8000"):
            assert client.get("/v1/model", headers={"host": host}).status_code == 200, host
        for host in ("evil.example:8000", "127.0.0.1.evil.example", "localhost.evil.example:8000", "0.0.0.0:8000"):
            _check_error(client.get("/v1/model", headers={"host": host}), 421, "localhost")
        rebound = client.post("/v1/predict", json={"images": [_b64(image_bytes())]},
                              headers={"host": "evil.example:8000"})
        _check_error(rebound, 421, "--allowed-host")
        for host in ("[::1", "127.0.0.1:x", "a b", "user@localhost"):
            _check_error(client.get("/v1/model", headers={"host": host}), 400, "Host header")
        metrics = client.get("/metrics").text
    assert "modellock_images_total 0.0" in metrics  # the rebound request never reached the model
    # with tokens (any host may listen), the Host is checked only when --allowed-host names some
    with _client(predictor, tokens=TokenFile.load(served["tokens"])) as client:
        _check_error(client.get("/v1/model", headers={"host": "evil.example"}), 401)
    with _client(predictor, tokens=TokenFile.load(served["tokens"]), allowed_hosts=("model.lan",)) as client:
        _check_error(client.get("/v1/model", headers={"host": "evil.example"}), 421)
        ok = client.get("/v1/model", headers={"host": "model.lan", "Authorization": f"Bearer {served['token']}"})
        assert ok.status_code == 200


def test_token_quotas_answer_429_with_retry_after_and_metrics_name_tokens_never_the_token(served, tmp_path, caplog):
    from modellock.serve import TokenFile
    from modellock.serve.auth import Quota

    tokens = TokenFile(path=tmp_path / "tokens.txt")
    alice = tokens.add("alice", Quota(per_minute=3))
    bob = tokens.add("bob")
    assert "alice sha256:" in tokens.path.read_text() and "per_minute=3\n" in tokens.path.read_text()
    tokens = TokenFile.load(tokens.path)
    assert tokens.quotas == {"alice": Quota(per_minute=3)}
    predictor = _predictor(served["model"], served["key"])

    def ask(client, token, n):
        return client.post("/v1/predict", json={"images": [_b64(image_bytes())] * n},
                           headers={"Authorization": f"Bearer {token}"})

    with caplog.at_level("DEBUG"), _client(predictor, tokens=tokens, quota=Quota(per_day=5)) as client:
        assert ask(client, alice, 2).status_code == 200
        over = ask(client, alice, 2)
        _check_error(over, 429, "alice's quota of 3 images per minute is used")
        assert 1 <= int(over.headers["retry-after"]) <= 60
        assert ask(client, alice, 1).status_code == 200  # the refused request counted nothing
        _check_error(ask(client, alice, 1), 429, "per minute")
        _check_error(ask(client, bob, 6), 413, "6 images in one request, over bob's quota of 5 images per day")
        assert ask(client, bob, 3).status_code == 200  # alice's use is not bob's
        over = ask(client, bob, 3)
        _check_error(over, 429, "bob's quota of 5 images per day")
        assert 60 < int(over.headers["retry-after"]) <= 86400
        assert ask(client, bob, 2).status_code == 200
        info = client.get("/v1/model", headers={"Authorization": f"Bearer {alice}"}).json()
        assert info["quota"] == {"images_per_minute": 3, "images_per_day": 5}
        metrics = client.get("/metrics").text
    assert 'modellock_token_images_total{token="alice"} 3.0' in metrics
    assert 'modellock_token_images_total{token="bob"} 5.0' in metrics
    assert 'modellock_token_quota_refusals_total{token="alice",window="minute"} 2.0' in metrics
    assert 'modellock_token_quota_refusals_total{token="bob",window="day"} 2.0' in metrics
    assert 'modellock_request_errors_total{code="429"} 3.0' in metrics
    for secret in (alice, bob, alice[4:20], tokens.hashes["alice"]):
        assert secret not in metrics and secret not in caplog.text
    # without tokens the quota is the service's, for every request together
    with _client(predictor, quota=Quota(per_minute=2)) as client:
        assert client.post("/v1/predict", json={"images": [_b64(image_bytes())] * 2}).status_code == 200
        _check_error(client.post("/v1/predict", json={"images": [_b64(image_bytes())]}), 429, "local's quota")


def test_tokens_file_quota_fields_are_checked_and_never_echoed(tmp_path):
    from modellock.errors import ModelLockError
    from modellock.serve import TokenFile

    path = tmp_path / "t.txt"
    digest = "sha256:" + "ab" * 32
    for fields in ("per_minute=0", "per_hour=3", "per_minute=2 per_minute=3", "per_day=x", "mlk_secret"):
        path.write_text(f"carol {digest} {fields}\n")
        with pytest.raises(ModelLockError, match="line 1: expected 'NAME sha256:") as e:
            TokenFile.load(path)
        assert fields not in str(e.value)  # the line may hold a pasted token: it is not echoed
    path.write_text(f"carol {digest} per_day=7 per_minute=2\n")
    assert TokenFile.load(path).quotas["carol"].per_day == 7


def test_output_label_top_k_and_round_limit_what_answers_hold(served):
    from modellock.serve.answers import Output

    predictor = _predictor(served["model"], served["key"])
    body = {"images": [_b64(image_bytes(seed=2))]}
    with _client(predictor, output=Output("label")) as client:
        result = client.post("/v1/predict", json=body).json()["results"][0]
        assert set(result) == {"image", "class", "label"} and result["class"] in ("circle", "square", "triangle")
        assert client.get("/v1/model").json()["output"] == {"mode": "label", "max_top_k": 0, "round": None}
    with _client(predictor, output=Output("top-k", top_k=2, digits=2)) as client:
        result = client.post("/v1/predict", json=body).json()["results"][0]
        assert len(result["top"]) == 2
        for p in [result["probability"]] + [t["probability"] for t in result["top"]]:
            assert p == round(p, 2)
        _check_error(client.post("/v1/predict", json={**body, "top_k": 3}), 422, "from 1 to 2")
    with _client(predictor) as client:  # probs, the default: up to every class, unrounded
        full = client.post("/v1/predict", json={**body, "top_k": 3}).json()["results"][0]
    assert len(full["top"]) == 3 and abs(sum(t["probability"] for t in full["top"]) - 1) < 1e-5
    assert result["class"] == full["class"] and result["probability"] == round(full["probability"], 2)
    with pytest.raises(ValueError, match="output must be one of label, top-k, probs"):
        Output("logits")


def test_a_two_class_model_answers_requests_without_top_k(served, tmp_path):
    build_tiny_locked_model(tmp_path / "two", served["key"], classes=("cat", "dog"))
    with _client(_predictor(tmp_path / "two", served["key"])) as client:
        r = client.post("/v1/predict", files={"image": ("a.png", image_bytes())})
        assert r.status_code == 200, r.text
        assert sorted(t["class"] for t in r.json()["results"][0]["top"]) == ["cat", "dog"]
        _check_error(client.post("/v1/predict", files={"image": ("a.png", image_bytes())}, data={"top_k": "3"}),
                     422, "from 1 to 2")


def test_serve_command_refuses_a_wrong_key_and_open_hosts_without_tokens(served, tmp_path, capsys):
    from modellock.cli import main

    def run(*args):
        with pytest.raises(SystemExit) as done:
            main([str(a) for a in args])
        err = capsys.readouterr().err
        return done.value.code, err

    wrong = tmp_path / "wrong.toml"
    served["key"].replace(seed=5).save(wrong)
    code, err = run("serve", "--model", served["model"], "--key", wrong, "--port", "0")
    assert code == 2 and err.strip() == "error: the key does not open this model"
    code, err = run("serve", "--model", served["model"], "--key", served["root"] / "key.toml", "--host", "0.0.0.0")
    assert code == 2 and "without --tokens the service listens on loopback only" in err
    code, err = run("serve", "--model", served["model"], "--key", served["root"] / "key.toml", "--tokens",
                    tmp_path / "none.txt")
    assert code == 2 and "none.txt: not found" in err
    code, err = run("serve", "--model", served["model"], "--key", served["root"] / "key.toml", "--allowed-host",
                    "model.lan:80")
    assert code == 2 and err.strip() == "error: --allowed-host 'model.lan:80': expected a host name or address, " \
                                        "without a port"
    for option, value, needle in (("--output", "logits", "output must be one of label, top-k, probs"),
                                  ("--round", "-1", "round must be from 0 to 15"),
                                  ("--images-per-minute", "0", "per_minute must be a whole number >= 1"),
                                  ("--max-queue-pixels", "100", "must not exceed max_queue_pixels")):
        code, err = run("serve", "--model", served["model"], "--key", served["root"] / "key.toml", option, value)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    # serve-token: add prints the token once, list names, remove
    tokens = tmp_path / "t.txt"
    main(["serve-token", "add", "--tokens", str(tokens), "--name", "bob"])
    out = capsys.readouterr()
    token = out.out.strip()
    assert re.fullmatch(r"mlk_[A-Za-z0-9_-]{43}", token) and token not in tokens.read_text()
    code, err = run("serve-token", "add", "--tokens", tokens, "--name", "bob")
    assert code == 2 and "already has a token named 'bob'" in err
    main(["serve-token", "add", "--tokens", str(tokens), "--name", "carol", "--per-minute", "10", "--per-day", "500"])
    capsys.readouterr()
    assert "\ncarol sha256:" in tokens.read_text() and tokens.read_text().endswith(" per_minute=10 per_day=500\n")
    main(["serve-token", "remove", "--tokens", str(tokens), "--name", "carol"])
    capsys.readouterr()
    tokens.write_text(tokens.read_text() + token + "\n")  # a token pasted by mistake: the error does not echo it
    code, err = run("serve-token", "list", "--tokens", tokens)
    assert code == 2 and "line 4: expected 'NAME sha256:" in err and token not in err


# ------------------------------------------------------------------------------------------- real server
def _http(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 30):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_real_server_process_auth_batching_errors_and_graceful_shutdown(served):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "modellock", "serve", "--model", str(served["model"]),
           "--key", str(served["root"] / "key.toml"), "--tokens", str(served["tokens"]), "--port", "0",
           "--max-wait-ms", "300", "--images-per-day", "1000", "--allowed-host", "model.lan"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines, port = [], None
        deadline = time.time() + 120
        while port is None and time.time() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
            port = int(m.group(1)) if m else None
        assert port, "".join(lines)
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {served['token']}", "Content-Type": "application/json"}
        body = json.dumps({"images": [_b64(image_bytes(seed=1))]}).encode()
        status, text, _ = _http("POST", f"{base}/v1/predict", body, {"Content-Type": "application/json"})
        assert status == 401 and json.loads(text)["error"]["status"] == 401
        status, text, _ = _http("POST", f"{base}/v1/predict", b'{"images": ["AAAA"]}', auth)
        assert status == 400 and "images[0]" in json.loads(text)["error"]["message"]
        status, text, _ = _http("POST", f"{base}/v1/predict", body, {**auth, "Host": f"evil.example:{port}"})
        assert status == 421 and json.loads(text)["error"]["status"] == 421
        assert _http("GET", f"{base}/v1/model", None, {**auth, "Host": f"model.lan:{port}"})[0] == 200
        # eight concurrent requests within the 300 ms window: batched together
        answers = [None] * 8

        def ask(i):
            answers[i] = _http("POST", f"{base}/v1/predict", body, auth)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(a[0] == 200 for a in answers), answers
        probabilities = [json.loads(a[1])["results"][0]["probability"] for a in answers]
        assert max(probabilities) - min(probabilities) < 1e-6  # the same image, whatever its batch
        metrics = _http("GET", f"{base}/metrics")[1].decode()
        count = float(re.search(r"^modellock_batch_size_count (\S+)", metrics, re.M).group(1))
        total = float(re.search(r"^modellock_batch_size_sum (\S+)", metrics, re.M).group(1))
        assert total == 8 and count < 8, metrics  # fewer batches than requests
        assert 'modellock_token_images_total{token="alice"} 8.0' in metrics and served["token"] not in metrics
        # SIGTERM with a request in flight: it is answered, then the server exits 0 and listens no more
        inflight = threading.Thread(target=ask, args=(0,))
        answers[0] = None
        inflight.start()
        time.sleep(0.1)  # the request now waits in the batcher's 300 ms window
        proc.send_signal(signal.SIGTERM)
        inflight.join()
        assert answers[0][0] == 200, answers[0]
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{base}/healthz", timeout=5)
        log = "".join(lines) + out + err
        assert "Traceback" not in log and PROMPT not in log and served["token"] not in log
        assert "Shutting down" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
