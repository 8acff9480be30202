"""`modellock serve --watermark` and `modellock verify --watermark`: keyed wrong answers, their record, the test."""

from __future__ import annotations

import base64
import io
import json
import logging
import os

import numpy as np
import pytest
from cli_cases import one_line_error as _one_line_error
import torch
from PIL import Image

from modellock.errors import ModelLockError
from modellock.keys import Key
from modellock.testing import build_tiny_locked_model, sample_images

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ("circle", "square", "triangle", "star", "ring")


@pytest.fixture(scope="module")
def owner(tmp_path_factory):
    """A key and an untrained locked classifier of five classes (the watermark needs no accuracy)."""
    root = tmp_path_factory.mktemp("watermark")
    key = Key.create("keyed-filter", "with oil pastel")
    key.save(root / "key.toml")
    build_tiny_locked_model(root / "model", key, classes=CLASSES)
    build_tiny_locked_model(root / "segmodel", key, task="segmentation")
    return {"root": root, "key": key, "model": root / "model", "segmodel": root / "segmodel"}


def _predictor(owner):
    from modellock.model_folder import LockedModel

    return LockedModel.from_pretrained(owner["model"], device="cpu").unlock(owner["key"], device="cpu")


def _png(a: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(a).save(buffer, format="PNG")
    return buffer.getvalue()


def _ask(client, images, top_k=None) -> list[dict]:
    out = []
    for i in range(0, len(images), 32):
        body = {"images": [base64.b64encode(_png(a)).decode() for a in images[i:i + 32]]}
        if top_k:
            body["top_k"] = top_k
        r = client.post("/v1/predict", json=body)
        assert r.status_code == 200, r.text
        out += r.json()["results"]
    return out


def _client(predictor, watermark, **options):
    from fastapi.testclient import TestClient

    from modellock.serve import create_app

    return TestClient(create_app(predictor, watermark=watermark, **options), base_url="http://127.0.0.1:8000")


# ----------------------------------------------------------------------------------------------- selection
def test_selection_is_keyed_deterministic_near_its_rate_and_never_the_models_class(tmp_path):
    from modellock.serve.watermark import Watermark

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (6, 6, 3), dtype=np.uint8) for _ in range(4000)]
    mark = Watermark(tmp_path / "a", "classification", list(CLASSES), rate=0.1)
    picks = [mark.select(im, i % 5) for i, im in enumerate(images)]
    chosen = {i for i, p in enumerate(picks) if p is not None}
    assert abs(len(chosen) / len(images) - 0.1) < 4 * np.sqrt(0.1 * 0.9 / len(images))  # within 4 sigma
    assert all(p != i % 5 and 0 <= p < 5 for i, p in enumerate(picks) if p is not None)  # never the model's own
    assert {p for i, p in enumerate(picks) if p is not None and i % 5 == 0} == {1, 2, 3, 4}  # any other class
    assert [mark.select(im, i % 5) for i, im in enumerate(images)] == picks  # the same every time
    again = Watermark(tmp_path / "a", "classification", list(CLASSES), rate=0.1)  # the secret is reused
    assert [again.select(im, i % 5) for i, im in enumerate(images[:500])] == picks[:500]
    other = Watermark(tmp_path / "b", "classification", list(CLASSES), rate=0.1)  # another secret
    theirs = {i for i, im in enumerate(images) if other.select(im, 0) is not None}
    assert len(theirs & chosen) < 0.3 * len(chosen)  # about rate * rate of the images, not the same ones
    assert os.stat(tmp_path / "a").st_mode & 0o777 == 0o700
    assert os.stat(tmp_path / "a" / "watermark.key").st_mode & 0o777 == 0o600
    assert len((tmp_path / "a" / "watermark.key").read_bytes()) == 32
    assert "secret" not in repr(mark) and (tmp_path / "a" / "watermark.key").read_bytes().hex() not in repr(mark)


def test_every_output_mode_carries_the_watermark_and_the_record_holds_exactly_those_queries(owner, tmp_path,
                                                                                            caplog):
    from modellock.serve.answers import Output
    from modellock.serve.watermark import Watermark
    from modellock.utils.watermark_record import WatermarkFolder, image_digest

    caplog.set_level(logging.DEBUG)
    predictor = _predictor(owner)
    images = sample_images(40, (20, 20), seed=7)
    plain = predictor.predict(images, top_k=5)
    mark = Watermark(tmp_path / "wm", "classification", list(CLASSES), rate=0.5)
    wrong = {i: mark.select(im, p["label"]) for i, (im, p) in enumerate(zip(images, plain))}
    marked = {i for i, w in wrong.items() if w is not None}
    assert 8 <= len(marked) <= 32
    texts = []
    for output, top_k in ((Output("label"), None), (Output("top-k", top_k=2), 2), (Output("probs"), 5)):
        with _client(predictor, mark, output=output) as client:
            first, second = _ask(client, images, top_k), _ask(client, images, top_k)
            texts.append(json.dumps(first) + client.get("/v1/model").text)
        assert first == second  # the same image, the same answer
        for i, (got, want) in enumerate(zip(first, plain)):
            if i in marked:
                assert got["label"] == wrong[i] != want["label"] and got["class"] == CLASSES[wrong[i]]
            else:
                assert got["label"] == want["label"]
            if output.mode != "label":  # a plausible distribution: the model's probabilities, two swapped
                assert got["top"][0]["class"] == got["class"] and len(got["top"]) == top_k
                assert got["probability"] == pytest.approx(want["probability"], abs=1e-6)
            if output.mode == "probs":
                assert sorted(t["probability"] for t in got["top"]) == \
                    pytest.approx(sorted(t["probability"] for t in want["top"]), abs=1e-6)
                if i in marked:
                    mine = {t["class"]: t["probability"] for t in got["top"]}
                    assert mine[want["class"]] == pytest.approx(
                        next(t["probability"] for t in want["top"] if t["class"] == CLASSES[wrong[i]]), abs=1e-6)
    assert all("locked" not in t for t in texts)  # the locked output is never an answer
    # a multipart upload of the same picture is the same query
    with _client(predictor, mark) as client:
        i = min(marked)
        r = client.post("/v1/predict", files={"image": ("x.png", _png(images[i]))}).json()["results"][0]
        assert r["label"] == wrong[i]
    # the record: exactly the watermarked images, private files, the classes answered and given
    folder = WatermarkFolder.open(tmp_path / "wm")
    entries = folder.entries()
    assert {image_digest(e.image) for e in entries} == {image_digest(images[i]) for i in marked}
    by_digest = {image_digest(images[i]): i for i in marked}
    assert all(e.answer == wrong[by_digest[image_digest(e.image)]] and
               e.model == plain[by_digest[image_digest(e.image)]]["label"] for e in entries)
    assert os.stat(folder.records).st_mode & 0o777 == 0o700
    assert all(os.stat(p).st_mode & 0o777 == 0o600 for p in folder.records.iterdir())
    secret = (tmp_path / "wm" / "watermark.key").read_bytes()
    for needle in (secret.hex(), base64.b64encode(secret).decode(), secret.hex().upper()):
        assert all(needle not in t for t in texts) and needle not in caplog.text


def test_a_full_record_keeps_watermarking_and_says_so_once(owner, tmp_path, caplog):
    from modellock.serve.watermark import Watermark

    predictor = _predictor(owner)
    images = sample_images(40, (20, 20), seed=8)
    mark = Watermark(tmp_path / "wm", "classification", list(CLASSES), rate=0.5, max_records=2)
    with caplog.at_level(logging.WARNING, logger="modellock.serve"), _client(predictor, mark) as client:
        answers = _ask(client, images)
        _ask(client, images[::-1])
    plain = predictor.predict(images, top_k=5)
    assert sum(a["label"] != p["label"] for a, p in zip(answers, plain)) > 2  # still watermarked
    assert len(list((tmp_path / "wm" / "records").iterdir())) == 2
    assert caplog.text.count("watermark record full (2 queries)") == 1


def test_a_service_suspect_is_tested_by_class_name_within_its_budget(owner, tmp_path):
    """Over HTTP (labels only): the watermarking service itself agrees with every recorded answer, the same model
    served without the watermark with none; the test asks at most ``max_queries`` recorded images."""
    from fastapi.testclient import TestClient

    from modellock.ownership import HttpSuspect, load_watermark, watermark_test
    from modellock.serve import create_app
    from modellock.serve.answers import Output
    from modellock.serve.watermark import Watermark

    predictor = _predictor(owner)
    mark = Watermark(tmp_path / "wm", "classification", list(CLASSES), rate=0.5)
    images = sample_images(60, (20, 20), seed=9)
    with _client(predictor, mark) as client:
        _ask(client, images)
    record = load_watermark(tmp_path / "wm")
    assert len(record) >= 15
    for watermark, verdict in ((mark, "derived"), (None, "independent")):
        app = create_app(predictor, output=Output("label"), watermark=watermark)
        with TestClient(app, base_url="http://127.0.0.1:8000") as client:
            suspect = HttpSuspect("http://127.0.0.1:8000", client=client, max_queries=12)
            result = watermark_test(record, suspect, max_queries=12)
        assert suspect.mode == "label" and suspect.queries == result["asked"] == 12
        assert result["verdict"] == verdict and result["agreed"] == (12 if watermark else 0), result


# ----------------------------------------------------------------------------------------------- bad inputs
def _evidence(classes=CLASSES, n=12, size=32):
    """A random evidence file's record of the owner's classes (its other methods: noise)."""
    from modellock.ownership.record import SETS, Evidence

    rng = np.random.default_rng(2)
    k = len(classes)

    def answers():
        p = np.exp(rng.normal(size=(n, k)))
        return {"probs": {s: (p / p.sum(1, keepdims=True)).astype(np.float32) for s in SETS}}

    meta = {"task": "classification", "classes": list(classes),
            "preprocessing": {"image_size": size, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "settings": {"alpha": 0.01}, "owner": {}, "calibration": []}
    images = {s: rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8) for s in SETS}
    truth = np.eye(k, dtype=np.float32)[rng.integers(0, k, n)]
    return Evidence(meta, images, answers(), [answers() for _ in range(4)], truth)


def test_bad_watermark_settings_and_folders_are_one_error_line(owner, tmp_path, run):
    model, key = owner["model"], owner["root"] / "key.toml"
    for rate in ("0", "0.6", "-0.1"):
        _one_line_error(run("serve", "--model", model, "--key", key, "--port", "0", "--watermark", tmp_path / "w",
                            "--watermark-rate", rate), f"--watermark-rate {float(rate)!r}: must be in (0, 0.5]")
    assert not (tmp_path / "w").exists()
    _one_line_error(run("serve", "--model", owner["segmodel"], "--key", key, "--port", "0", "--watermark",
                        tmp_path / "w"), "segmentation answers (a class per pixel) are not watermarked")
    (tmp_path / "file").write_text("x")
    _one_line_error(run("serve", "--model", model, "--key", key, "--port", "0", "--watermark", tmp_path / "file"),
                    "file: not a folder")
    with pytest.raises(ModelLockError, match="at least 3 classes"):
        from modellock.serve.watermark import Watermark

        Watermark(tmp_path / "two", "classification", ["cat", "dog"])
    # verify: a missing folder, a folder that is not a watermark's, one with no record yet, a damaged record
    _evidence().save(tmp_path / "owner.evidence")
    verify = ("verify", "--evidence", tmp_path / "owner.evidence", "--suspect", owner["model"], "--watermark")
    _one_line_error(run(*verify, tmp_path / "missing"), "missing: not found")
    (tmp_path / "empty").mkdir()
    _one_line_error(run(*verify, tmp_path / "empty"), "no watermark.json")
    from modellock.serve.watermark import Watermark

    mark = Watermark(tmp_path / "fresh", "classification", list(CLASSES), rate=0.5)
    _one_line_error(run(*verify, tmp_path / "fresh"), "holds no watermarked query yet")
    mark.folder.add(np.zeros((4, 4, 3), np.uint8), 1, 0)
    (mark.folder.records / "junk.png").write_bytes(b"not a png")
    _one_line_error(run(*verify, tmp_path / "fresh"), "junk.png: not a watermark record")
    with pytest.raises(ModelLockError, match="other classes"):
        Watermark(tmp_path / "fresh", "classification", ["a", "b", "c"])


# ----------------------------------------------------------------------------------------------- outcome
def _fit(arch: str, images, labels, seed: int, transform, epochs: int):
    """A fresh ``arch`` trained on ``(images, labels)``, ``epochs`` times over (a student fits them)."""
    from modellock.tasks import task_type

    torch.manual_seed(seed)
    net = task_type("classification").create_model(arch, len(CLASSES), 32)
    x = torch.stack([transform(a) for a in images])
    y = torch.as_tensor(labels)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


@pytest.mark.slow
def test_a_student_of_the_watermarked_service_is_derived_and_an_independent_model_is_not(owner, tmp_path, run):
    """The attack: a thief queries the service (labels only) and trains a student on its answers. The defence: the
    watermark test finds the student (p < 0.01); a model trained on the owner's unwatermarked answers to the same
    images, and the owner's own model, are not called derived."""
    from safetensors.torch import save_file

    from modellock.model_folder import LockedModel
    from modellock.ownership import ModelSuspect, load_watermark, watermark_test
    from modellock.serve.answers import Output
    from modellock.serve.watermark import Watermark

    locked = LockedModel.from_pretrained(owner["model"], device="cpu")
    predictor = locked.unlock(owner["key"], device="cpu")
    transform = locked.inference_transform()
    queries = sample_images(120, (32, 32), seed=11)
    mark = Watermark(tmp_path / "wm", "classification", list(CLASSES), rate=0.2)
    with _client(predictor, mark, output=Output("label")) as client:
        answered = [r["label"] for r in _ask(client, queries)]
    plain = [r["label"] for r in predictor.predict(queries, top_k=1)]
    assert sum(a != p for a, p in zip(answered, plain)) >= 10

    student = _fit("small-cnn", queries, answered, 1, transform, epochs=25)
    independent = _fit("tiny-cnn", queries, plain, 2, transform, epochs=40)  # the same answers, unwatermarked
    record = load_watermark(tmp_path / "wm")
    found = watermark_test(record, ModelSuspect(student, transform, "classification", name="student"))
    assert found["verdict"] == "derived" and found["p_value"] < 0.01, found
    assert found["value"] > 0.5 and found["asked"] == len(record)
    for net, name in ((independent, "independent"), (locked.model, "owner's network")):
        result = watermark_test(record, ModelSuspect(net, transform, "classification", keep=len(CLASSES), name=name))
        assert result["verdict"] == "independent" and result["p_value"] > 0.01, (name, result)
        assert result["value"] <= record.chance

    # the command line: the watermark row in the table, one more method in the Bonferroni split, exit 3
    _evidence().save(tmp_path / "owner.evidence")
    for net, name, arch in ((student, "student", "small-cnn"), (independent, "independent", "tiny-cnn")):
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / f"{name}.safetensors"))
        code, out, _ = run("verify", "--evidence", tmp_path / "owner.evidence", "--suspect",
                           tmp_path / f"{name}.safetensors", "--arch", arch, "--watermark", tmp_path / "wm",
                           "--json", tmp_path / f"{name}.json")
        result = json.loads((tmp_path / f"{name}.json").read_text())
        row = result["methods"]["watermark"]
        assert row["statistic"] == "watermark agreement" and result["level"] == 0.01 / len(result["methods"])
        assert any(line.startswith("watermark    watermark agreement") for line in out.splitlines()), out
        if name == "student":
            assert code == 3 and row["verdict"] == "derived" and row["p_value"] < result["level"]
        else:
            assert row["verdict"] == "independent"
