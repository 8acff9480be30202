"""Bad input, fuzzed with hypothesis, over the service, the Python API and the CLI.

Every input must end in a result or in the one error the surface promises: an HTTP 4xx JSON error from
the service, a ``ModelLockError`` (``ImageError`` is a ``ValueError`` too) from the Python API,
one ``error: ...`` line and exit code 2 from the CLI; never a traceback, a crash, or a file written
outside its folder. The CI run is small and derandomized (a fixed seed); the large run is the same tests
with more examples per target, as docs/reliability.md says:

    MODELLOCK_FUZZ_EXAMPLES=400 MODELLOCK_FUZZ_REPORT=fuzz.json python -m pytest -q tests/test_fuzz.py

``MODELLOCK_FUZZ_REPORT`` writes the distinct inputs tried and the unhandled ones per target.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from image_cases import MODES, image_bytes, png_with_header_size
from modellock.errors import ModelLockError
from modellock.keys import Key
from modellock.testing import build_tiny_locked_model

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "with oil pastel"
LARGE = int(os.environ.get("MODELLOCK_FUZZ_EXAMPLES", "0"))
settings.register_profile("modellock-fuzz", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                 HealthCheck.data_too_large, HealthCheck.large_base_example])


def fuzz(ci_examples: int):
    """A derandomized hypothesis profile: ``ci_examples`` in CI, ``MODELLOCK_FUZZ_EXAMPLES`` in the large run."""
    return settings(settings.get_profile("modellock-fuzz"), max_examples=LARGE or ci_examples)


# ------------------------------------------------------------------------------------------- bookkeeping
TRIED: dict[str, set] = {}
UNHANDLED: dict[str, int] = {}


def record(target: str, value) -> None:
    """Count a distinct input of ``target`` (by the sha256 of its repr)."""
    TRIED.setdefault(target, set()).add(hashlib.sha256(repr(value).encode()).hexdigest())


@contextlib.contextmanager
def counted(target: str):
    """Count an exception escaping the block as unhandled for ``target`` (and let it fail the test)."""
    try:
        yield
    except BaseException:
        UNHANDLED[target] = UNHANDLED.get(target, 0) + 1
        raise


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    rows = {t: {"distinct_inputs": len(v), "unhandled": UNHANDLED.get(t, 0)} for t, v in sorted(TRIED.items())}
    total = sum(r["distinct_inputs"] for r in rows.values())
    print(f"\nfuzz: {total} distinct inputs, {sum(UNHANDLED.values())} unhandled")
    for target, r in rows.items():
        print(f"  {target:28s} {r['distinct_inputs']:6d} inputs  {r['unhandled']} unhandled")
    if os.environ.get("MODELLOCK_FUZZ_REPORT"):
        Path(os.environ["MODELLOCK_FUZZ_REPORT"]).write_text(json.dumps({"total": total, "targets": rows}, indent=2))


# ------------------------------------------------------------------------------------------- strategies
FORMATS_OF_MODE = {"1": ["PNG", "BMP", "TIFF"], "L": ["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"],
                   "LA": ["PNG", "TIFF", "WEBP"], "P": ["PNG", "GIF", "TIFF"], "CMYK": ["JPEG", "TIFF"],
                   "I;16": ["PNG", "TIFF"], "I": ["TIFF"], "F": ["TIFF"], "RGBA": ["PNG", "TIFF", "WEBP"],
                   "RGB": ["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"]}


@st.composite
def valid_images(draw):
    mode = draw(st.sampled_from(MODES))
    fmt = draw(st.sampled_from(FORMATS_OF_MODE[mode]))
    size = (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    return image_bytes(mode, size, fmt, seed=draw(st.integers(0, 3)))


@st.composite
def bad_image_bytes(draw):
    """Valid images of every mode and format, then (mostly) damaged: truncated, bytes flipped, junk around,
    a header claiming another size (1x1 .. 20000x20000), or not an image at all."""
    kind = draw(st.sampled_from(["valid", "truncated", "flipped", "junk", "header", "random", "text"]))
    if kind == "random":
        return draw(st.binary(min_size=0, max_size=300))
    if kind == "text":
        return draw(st.sampled_from([b"", b"GIF89a", b"\x89PNG\r\n\x1a\n", b"P6\n2 2\n255\n", b"BM", b"II*\x00",
                                     b'editor = "keyed-filter"\nprompt = "x"\n', b"<svg></svg>", b"%!PS-Adobe-3.0"]))
    if kind == "header":
        w = draw(st.sampled_from([0, 1, 2, 4, 4097, 20000, 2**31 - 1]))
        h = draw(st.sampled_from([0, 1, 3, 4, 4097, 20000, 2**31 - 1]))
        return png_with_header_size(w, h)
    data = draw(valid_images())
    if kind == "truncated":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if kind == "flipped":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(out) - 1))
            out[i] ^= draw(st.integers(1, 255))
        return bytes(out)
    if kind == "junk":
        return draw(st.binary(max_size=16)) + data + draw(st.binary(max_size=16))
    return data


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A key, a tiny locked classifier and a service client (no batching wait) for it."""
    from fastapi.testclient import TestClient

    from modellock.model_folder import LockedModel
    from modellock.serve import Limits, create_app

    root = tmp_path_factory.mktemp("fuzz")
    key = Key.create("keyed-filter", PROMPT)
    key.save(root / "key.toml")
    build_tiny_locked_model(root / "model", key)
    build_tiny_locked_model(root / "sealed", key, seal=True)
    predictor = LockedModel.from_pretrained(root / "model", device="cpu").unlock(key, device="cpu")
    limits = Limits(max_images=4, max_pixels=4096 * 4096, max_body_bytes=200_000)
    app = create_app(predictor, limits=limits, max_wait_ms=0)
    with TestClient(app, base_url="http://localhost:8000", raise_server_exceptions=True) as client:
        yield {"root": root, "key": key, "predictor": predictor, "client": client,
               "config": json.loads((root / "model" / "config.json").read_text()),
               "sealed_config": json.loads((root / "sealed" / "config.json").read_text())}


@pytest.fixture(scope="module")
def edit_folder(tmp_path_factory):
    """An edit folder with one edited image, train/a/1.png."""
    from modellock.edit import EditFolder

    root = tmp_path_factory.mktemp("edits")
    folder = EditFolder(root, Key.create("keyed-filter", "x"))
    (root / "train" / "a").mkdir(parents=True)
    (root / "train" / "a" / "1.png").write_bytes(image_bytes())
    return folder


# ------------------------------------------------------------------------------------------- the service
@st.composite
def requests(draw):
    """A /v1/predict request: multipart or JSON (valid or broken base64, data URLs, wrong types), top_k of
    any kind, odd content types."""
    images = draw(st.lists(bad_image_bytes(), min_size=0, max_size=5))
    top_k = draw(st.one_of(st.none(), st.integers(-3, 6), st.sampled_from(["2", "x", "", "1e9"]), st.floats(0, 4)))
    envelope = draw(st.sampled_from(["multipart", "json", "json-broken", "json-types", "raw"]))
    if envelope == "multipart":
        files = [("image", (draw(st.sampled_from(["a.png", "../../etc/passwd", "", "x" * 300, "é.jpg"])), d))
                 for d in images]
        data = {} if top_k is None else {"top_k": str(top_k)}
        return {"files": files or None, "data": data or None}
    if envelope == "json":
        encoded = [draw(st.sampled_from(["", "data:image/png;base64,"])) + base64.b64encode(d).decode() for d in images]
        body = {"images": encoded}
        if top_k is not None:
            body["top_k"] = top_k
        return {"json": body}
    if envelope == "json-broken":
        return {"content": draw(st.sampled_from([b"{", b"[]", b'{"images": "x"}', b'{"images": [1, null]}', b"null",
                                                 b'{"images": ["data:image/png,abc"]}', b'{"images": ["!!"]}',
                                                 b"\xff\xfe"])), "headers": {"content-type": "application/json"}}
    if envelope == "json-types":
        return {"json": draw(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                                          lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c,
                                                                                              max_size=3),
                                          max_leaves=6))}
    ctype = draw(st.sampled_from(["text/plain", "image/png", "multipart/form-data",
                                  "application/x-www-form-urlencoded"]))
    return {"content": images[0] if images else b"", "headers": {"content-type": ctype}}


@fuzz(60)
@given(request=requests())
def test_service_answers_every_request_with_a_result_or_a_4xx_json_error(world, request):
    record("service /v1/predict", request)
    with counted("service /v1/predict"):
        r = world["client"].post("/v1/predict", **request)
        assert r.status_code in (200, 400, 413, 415, 422), r.text
        body = r.json()
        if r.status_code == 200:
            assert len(body["results"]) >= 1
        else:
            assert body["error"]["status"] == r.status_code and body["error"]["message"]
        assert "Traceback" not in r.text and PROMPT not in r.text


HOSTS = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=60),
    st.builds("".join, st.lists(st.sampled_from(["localhost", "127.0.0.1", "[::1]", "::1", "[", "]", ":", ":8000",
                                                 ":99999", ":-1", "evil.example", ".", "@", "%00", " "]), max_size=5)))


@fuzz(60)
@given(host=HOSTS)
def test_service_answers_any_host_header_with_a_result_or_a_400_421_json_error(world, host):
    """A loopback service (no tokens): only the loopback names pass; nothing else reaches the model."""
    record("service Host header", host)
    with counted("service Host header"):
        r = world["client"].get("/v1/model", headers={"host": host.encode("latin-1")})
        assert r.status_code in (200, 400, 421), r.text
        if r.status_code == 200:
            assert host.lower().rsplit(":", 1)[0] in ("localhost", "127.0.0.1", "[::1]") or \
                host.lower() in ("localhost", "127.0.0.1", "[::1]"), host
        else:
            assert r.json()["error"]["status"] == r.status_code


# ------------------------------------------------------------------------------------------- Python API
@fuzz(60)
@given(data=bad_image_bytes())
def test_decode_image_returns_rgb_or_raises_image_error(data):
    from modellock.errors import ImageError
    from modellock.utils.images import decode_image

    record("api decode_image", data)
    with counted("api decode_image"):
        try:
            a = decode_image(data, max_pixels=4096 * 4096)
        except ImageError:
            return
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and a.size > 0


@fuzz(25)
@given(array=st.one_of(
    hnp.arrays(st.sampled_from([np.uint8, np.int16, np.int64, np.float32, np.float64, np.bool_, np.complex64]),
               hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=9)),
    st.builds(lambda d: __import__("PIL.Image", fromlist=["Image"]).open(io.BytesIO(d)), valid_images())))
def test_predictor_predicts_or_raises_model_lock_error_for_any_array_or_pil_image(world, array):
    record("api Predictor.predict", array if isinstance(array, np.ndarray) else (array.mode, array.size,
                                                                                 array.tobytes()))
    with counted("api Predictor.predict"):
        try:
            result = world["predictor"].predict([array])
        except (ModelLockError, ValueError):  # ImageError, ImageInputError (a TypeError too)
            return
        assert result[0]["class"] in ("circle", "square", "triangle")


_KEY_FIELDS = ["editor", "prompt", "model", "revision", "seed", "steps", "image_guidance", "guidance", "resolution",
               "alpha", "params", "extra"]


@st.composite
def key_texts(draw):
    """A key file's text: a valid key with fields dropped, retyped or out of range, or plain junk."""
    if draw(st.booleans()):
        return draw(st.text(max_size=80))
    fields = dict(Key.create("keyed-filter", PROMPT).to_dict())
    fields.pop("params")
    for name in draw(st.lists(st.sampled_from(_KEY_FIELDS), max_size=3)):
        choice = draw(st.sampled_from(["drop", "value"]))
        if choice == "drop":
            fields.pop(name, None)
        else:
            fields[name] = draw(st.one_of(st.integers(-2**63, 2**64), st.floats(allow_nan=True), st.text(max_size=10),
                                          st.booleans(), st.lists(st.integers(), max_size=2),
                                          st.dictionaries(st.sampled_from(["strength", "pattern", "x"]),
                                                          st.one_of(st.floats(), st.text(max_size=3)), max_size=2)))
    import tomli_w

    try:
        return tomli_w.dumps(fields)
    except (TypeError, ValueError):
        return repr(fields)


@fuzz(60)
@given(text=key_texts())
def test_key_load_returns_a_key_or_raises_key_file_error(tmp_path, text):
    from modellock.errors import KeyFileError

    record("api Key.load", text)
    path = tmp_path / "k.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with counted("api Key.load"):
        try:
            Key.load(path)
        except KeyFileError as e:
            assert "k.toml" in str(e)


def _mutate_json(draw, value, depth=0):
    if depth > 3 or draw(st.integers(0, 4)) == 0:
        return draw(st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.text(max_size=5), st.just([]),
                              st.just({}), st.floats(allow_nan=True)))
    if isinstance(value, dict) and value:
        value = dict(value)
        name = draw(st.sampled_from(sorted(value)))
        if draw(st.booleans()):
            value.pop(name)
        else:
            value[name] = _mutate_json(draw, value[name], depth + 1)
    return value


@st.composite
def model_folder_damage(draw):
    """What is wrong with a model folder: config.json mutated or junk, weights flipped/truncated (with the
    config's sha256 updated or not), files missing."""
    kind = draw(st.sampled_from(["config", "config-junk", "weights", "weights-rehashed", "missing"]))
    if kind == "config":
        return kind, draw(st.integers(0, 2**32))
    if kind == "config-junk":
        return kind, draw(st.binary(max_size=60))
    if kind == "missing":
        return kind, draw(st.sampled_from(["config.json", "weights"]))
    return kind, (draw(st.integers(0, 10_000)), draw(st.integers(1, 255)), draw(st.booleans()))


@fuzz(25)
@given(damage=model_folder_damage(), sealed=st.booleans(), data=st.data())
def test_model_folder_loads_or_raises_model_lock_error(world, tmp_path_factory, damage, sealed, data):
    """A damaged folder, plain or sealed (then opened with its key): it loads and runs, or one ModelLockError."""
    import shutil

    from modellock.model_folder import LockedModel

    record("api LockedModel.from_pretrained", (damage, sealed))
    folder = tmp_path_factory.mktemp("damaged")
    shutil.copytree(world["root"] / ("sealed" if sealed else "model"), folder, dirs_exist_ok=True)
    kind, arg = damage
    name = "model.sealed" if sealed else "model.safetensors"
    config = world["sealed_config" if sealed else "config"]
    weights = (folder / name).read_bytes()
    if kind == "config":
        cfg = _mutate_json(data.draw, dict(config))
        record("api LockedModel.from_pretrained", (damage, repr(cfg)))
        (folder / "config.json").write_text(json.dumps(cfg))
    elif kind == "config-junk":
        (folder / "config.json").write_bytes(arg)
    elif kind == "missing":
        (folder / (name if arg == "weights" else arg)).unlink()
    else:
        where, flip, truncate = arg
        damaged = bytearray(weights[: len(weights) - where] if truncate else weights)
        if damaged and not truncate:
            damaged[where % len(damaged)] ^= flip
        (folder / name).write_bytes(bytes(damaged))
        if kind == "weights-rehashed":  # a tampered file with a matching hash: the parser itself must hold
            cfg = dict(config, weights_sha256=hashlib.sha256(damaged).hexdigest())
            (folder / "config.json").write_text(json.dumps(cfg))
    with counted("api LockedModel.from_pretrained"):
        try:
            model = LockedModel.from_pretrained(folder, device="cpu")
            model = model.open(world["key"]) if sealed else model
        except ModelLockError:
            return
        model.predictor().predict([np.zeros((8, 8, 3), np.uint8)])  # what loads also runs


@st.composite
def archive_members(draw):
    """Tar members: ordinary images and traversal attempts (../, absolute, symlinks and hard links out, devices)."""
    good = [("data/train/a/1.png", "file"), ("data/train/b/2.png", "file")]
    evil = draw(st.lists(st.tuples(
        st.sampled_from(["../ESCAPE", "../../ESCAPE", "/tmp/ESCAPE", "data/../../ESCAPE", "data/train/a/ESCAPE.png",
                         "data/train/a/link.png", "./data/x/../../../ESCAPE"]),
        st.sampled_from(["file", "symlink-out", "hardlink-out", "fifo", "dir"])), max_size=3))
    return good + evil


@fuzz(30)
@given(members=archive_members())
def test_archives_extract_inside_their_folder_or_raise_data_error(tmp_path_factory, members):
    from modellock.data import open_source
    from modellock.utils.paths import cache_root

    record("api open_source(archive)", members)
    root = tmp_path_factory.mktemp("archive")
    archive = root / "data.tar.gz"
    png = image_bytes("RGB", (4, 4))
    with tarfile.open(archive, "w:gz") as tar:
        for name, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(png)
                tar.addfile(info, io.BytesIO(png))
                continue
            info.type = {"symlink-out": tarfile.SYMTYPE, "hardlink-out": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE,
                         "dir": tarfile.DIRTYPE}[kind]
            info.linkname = "../../../../ESCAPE" if "link" in kind else ""
            tar.addfile(info)
    with counted("api open_source(archive)"):
        try:
            source = open_source(archive)
            assert sum(len(s) for s in source.splits.values()) >= 1
        except ModelLockError:
            pass
        outside = [p for p in list(root.parent.rglob("ESCAPE*")) + list(cache_root().parent.rglob("ESCAPE*"))
                   if "sources" not in p.parts]
        assert not outside and not Path("/tmp/ESCAPE").exists()


@fuzz(40)
@given(lines=st.lists(st.one_of(
    st.builds(lambda f: json.dumps({"source": "a/1.png", "file": f, "source_sha256": "0"}),
              st.sampled_from(["../../etc/passwd", "/etc/passwd", "", ".", "train/a/../../../x", "train/a/1.png",
                               "train\\..\\..\\x"])),
    st.text(max_size=30), st.just("[1, 2]"), st.just('{"source": 3, "file": []}')), min_size=1, max_size=4))
def test_edit_manifests_with_traversal_or_junk_raise_data_error(edit_folder, lines):
    record("api EditFolder manifest", lines)
    root = edit_folder.root
    (root / "train" / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    edit_folder._done.clear()  # read the manifest again (opening a folder costs a slow key check)
    with counted("api EditFolder manifest"):
        try:
            entries = edit_folder.entries("train")
        except ModelLockError:
            return
        for e in entries.values():
            assert (root / e.file).resolve().is_relative_to(root.resolve())


# ------------------------------------------------------------------------------------------- CLI
def _cli(argv: list[str]) -> tuple[int, str, str]:
    """``modellock ARGV`` in process: (exit code, stdout, stderr)."""
    from modellock.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def _one_error_line(code: int, err: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) >= 1 and "Traceback" not in err
    assert lines[-1].startswith("error: ") or lines[-1].startswith("Error") or "Usage:" in err, err


@fuzz(12)
@given(images=st.lists(bad_image_bytes(), min_size=1, max_size=3))
def test_cli_predict_prints_results_or_one_error_line(world, tmp_path_factory, images):
    record("cli predict", images)
    folder = tmp_path_factory.mktemp("cli-images")
    paths = []
    for i, data in enumerate(images):
        (folder / f"{i}.png").write_bytes(data)
        paths.append(str(folder / f"{i}.png"))
    with counted("cli predict"):
        code, out, err = _cli(["predict", "--model", str(world["root"] / "model"), "--key",
                               str(world["root"] / "key.toml"), *paths])
        if code == 0:
            assert len(out.splitlines()) == len(paths)
        else:
            _one_error_line(code, err)
            assert "error: " in err and any(p in err for p in paths)
        assert PROMPT not in out + err


def _unlocks(path: Path, world) -> bool:
    try:
        return Key.load(path).matches(world["config"]["lock"]["fingerprint"])
    except ModelLockError:
        return False


@fuzz(30)
@given(text=key_texts(), command=st.sampled_from(["edit", "predict", "serve"]))
def test_cli_with_a_bad_key_file_prints_one_error_line(world, tmp_path_factory, text, command):
    record("cli --key", (text, command))
    folder = tmp_path_factory.mktemp("cli-key")
    key = folder / "k.toml"
    key.write_text(text, encoding="utf-8", errors="surrogatepass")
    if command == "serve" and _unlocks(key, world):
        command = "predict"  # the right key: serve would start and wait for requests
    args = {"edit": ["edit", "--key", str(key), "--data", str(folder / "none"), "--out", str(folder / "o")],
            "predict": ["predict", "--model", str(world["root"] / "model"), "--key", str(key), str(key)],
            "serve": ["serve", "--model", str(world["root"] / "model"), "--key", str(key), "--port", "0",
                      "--host", "127.0.0.1"]}[command]
    with counted("cli --key"):
        code, out, err = _cli(args)
        _one_error_line(code, err)


@fuzz(25)
@given(params=st.lists(st.text(max_size=12), max_size=3), numbers=st.lists(st.sampled_from(
    ["--seed", "--steps", "--alpha", "--resolution", "--guidance"]), max_size=2), value=st.sampled_from(
    ["-1", "0", "1e309", "nan", "x", "2", "0.5", "99999999999999999999999"]), editor=st.sampled_from(
    ["keyed-filter", "instruct-pix2pix", "block-shuffle", "nope", ""]))
def test_cli_keygen_writes_a_key_or_prints_one_error_line(tmp_path_factory, params, numbers, value, editor):
    record("cli keygen", (params, numbers, value, editor))
    out = tmp_path_factory.mktemp("keygen") / "k.toml"
    argv = ["keygen", "--out", str(out), "--editor", editor, "--prompt", PROMPT]
    for p in params:
        argv += ["--param", p]
    for n in numbers:
        argv += [n, value]
    with counted("cli keygen"):
        code, stdout, err = _cli(argv)
        if code == 0:
            Key.load(out)
        else:
            _one_error_line(code, err)
            assert not out.exists()
        assert PROMPT not in stdout + err


def test_png_header_helper_is_what_it_says():
    data = png_with_header_size(20000, 3)
    assert struct.unpack(">II", data[16:24]) == (20000, 3)
    assert zlib.crc32(data[12:29]) & 0xFFFFFFFF == struct.unpack(">I", data[29:33])[0]
