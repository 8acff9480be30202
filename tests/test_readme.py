"""Every ```python and ```bash block of README.md and of docs/**/*.md runs, so that the docs cannot drift from
the code.

The convention (also in docs/contributing.md):

- Each block runs alone, in a fresh temporary folder, in the order of the README: a Python block with
  ``exec`` (it imports what it uses), a bash block with ``bash -e``. A block passes when it raises
  nothing (Python) or exits 0 (bash).
- The folder holds tiny fixtures under the names the README uses, as links:
  ``SRC`` and ``data/`` (a shapes dataset: 10 classes, ``train/`` and ``test/``), ``key.toml`` (a
  keyed-filter key), ``original/`` and ``locked/`` (tiny models trained on ``SRC`` with that key), and
  the images ``image.png``, ``img1.jpg``, ``img2.png``, ``photo.jpg``. Files are all a block gets: a Python
  block runs as written, with no names given to it (it defines or imports every name it uses, as a reader
  who pastes it would have to), and a block of Python is never skipped. A name the block writes itself
  (``--out locked/``) is left out, so the block makes its own.
- ``modellock`` on the block's PATH runs this checkout's code and appends ``TINY_TRAINING`` to ``lock``
  and ``train`` (the last value of a flag wins), so that the README's commands train in seconds.
- An HTML comment on the line(s) right before a block changes how it runs:
  ``<!-- snippet: skip (REASON) -->`` does not run it; the reason is required (a synopsis with
  ``[optional]`` parts, a download, a GPU, minutes of compute);
  ``<!-- snippet: segmentation -->`` gives it the segmentation fixtures: ``SRC``, ``seg/``, ``locked/``
  and ``original/`` are then a shapes-with-masks dataset and tiny segmentation models.
- Blocks of other languages (``toml``, ``yaml``, ``json``, ...) are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").rglob("*.md"))]  # README first, then the guides in path order
TINY_TRAINING = ["--epochs", "1", "--batch-size", "32", "--num-workers", "0", "--image-size", "32"]
_FENCE = re.compile(r"^```(\w*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*snippet:\s*(.*?)\s*-->\s*$")
_SKIP = re.compile(r"^skip\s*\((.+)\)$")
FIXTURE_SETS = ("classification", "segmentation")


def readme_blocks(text: str) -> list[dict]:
    """Every fenced block: language, code, line of its opening fence, and the directives before it."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        directives, j = [], i - 1
        while j >= 0 and _DIRECTIVE.match(lines[j]):
            directives.insert(0, _DIRECTIVE.match(lines[j]).group(1))
            j -= 1
        end = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("```"))
        blocks.append({"lang": m.group(1), "code": "\n".join(lines[i + 1:end]) + "\n", "line": i + 1,
                       "directives": directives})
        i = end + 1
    return blocks


def _plan(block: dict) -> dict:
    """How to run a block (``skip`` reason, fixture set); ValueError for a directive outside the convention."""
    plan = {"skip": None, "fixtures": "classification"}
    for d in block["directives"]:
        skip = _SKIP.match(d)
        if skip and skip.group(1).strip():
            plan["skip"] = skip.group(1).strip()
        elif d in FIXTURE_SETS:
            plan["fixtures"] = d
        else:
            where = f"{block.get('file', 'README.md')} line {block['line']}"
            raise ValueError(f"{where}: unknown snippet directive {d!r} (expected "
                             f"'skip (reason)' with a reason, or one of {', '.join(FIXTURE_SETS)})")
    return plan


BLOCKS = [{**b, "file": str(page.relative_to(ROOT))} for page in DOCS
          for b in readme_blocks(page.read_text(encoding="utf-8")) if b["lang"] in ("python", "bash")]


def test_readme_blocks_follow_the_convention():
    """Directives parse (a skip names its reason), and most blocks run; README.md and the guides both have some."""
    plans = [_plan(b) for b in BLOCKS]
    assert sum(p["skip"] is None for p in plans) >= 4, "most blocks must run"
    assert {b["file"] for b, p in zip(BLOCKS, plans) if p["skip"] is None} >= {"README.md", "docs/guide/serving.md"}
    skipped = [f"{b['file']}:{b['line']}" for b, p in zip(BLOCKS, plans) if b["lang"] == "python" and p["skip"]]
    assert not skipped, f"{skipped}: a Python block must run as written"
    with pytest.raises(ValueError, match="unknown snippet directive"):
        _plan({"line": 1, "directives": ["skip"]})  # a skip without its reason


# --------------------------------------------------------------------------------------------- fixtures
def _images(folder: Path, source_image: Path) -> None:
    from PIL import Image

    im = Image.open(source_image).convert("RGB")
    for name in ("image.png", "img1.jpg", "img2.png", "photo.jpg"):
        im.save(folder / name)


def _build_classification(root: Path) -> Path:
    from modellock.data import make_shapes_dataset, open_source
    from modellock.keys import Key
    from modellock.lock import lock_model, train_baseline
    from modellock.train import TrainConfig

    data = make_shapes_dataset(root / "data", 100, 30)
    Key.create("keyed-filter", "with oil pastel").save(root / "key.toml")
    source = open_source(data)
    tc = TrainConfig(epochs=1, batch_size=32, num_workers=0)
    train_baseline(source, "tiny-cnn", root / "original", tc)
    lock_model(Key.load(root / "key.toml"), source, "tiny-cnn", root / "locked", train=tc, progress=False)
    (root / "SRC").symlink_to(data)
    _images(root, next((data / "test").rglob("*.png")))
    return root


def _build_segmentation(root: Path) -> Path:
    from modellock.data import make_shapes_segmentation_dataset, open_source
    from modellock.keys import Key
    from modellock.lock import lock_model, train_baseline
    from modellock.train import TrainConfig

    data = make_shapes_segmentation_dataset(root / "seg", 20, 6, size=32)
    Key.create("keyed-filter", "with oil pastel").save(root / "key.toml")
    source = open_source(data)
    tc = TrainConfig(epochs=1, batch_size=16, num_workers=0)
    train_baseline(source, "tiny-segnet", root / "original", tc, image_size=32)
    lock_model(Key.load(root / "key.toml"), source, "tiny-segnet", root / "locked", train=tc, image_size=32,
               progress=False)
    (root / "SRC").symlink_to(data)
    _images(root, next((data / "test" / "images").iterdir()))
    return root


@pytest.fixture(scope="module")
def fixture_sets(tmp_path_factory):
    """The fixture folders, each built on first use."""
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            build = {"classification": _build_classification, "segmentation": _build_segmentation}[name]
            built[name] = build(tmp_path_factory.mktemp(f"readme-{name}"))
        return built[name]

    return get


def _block_folder(tmp_path: Path, fixtures: Path, code: str) -> Path:
    """A fresh folder linking every fixture the block does not write itself."""
    written = {Path(m).parts[0] for m in re.findall(r"--out(?:\s+|=)(\S+)", code)}
    work = tmp_path / "block"
    work.mkdir()
    for item in fixtures.iterdir():
        if item.name not in written and not item.name.startswith("."):
            (work / item.name).symlink_to(item.resolve(), target_is_directory=item.is_dir())
    return work


def _modellock_on_path(tmp_path: Path) -> dict:
    """An environment whose ``modellock`` runs this checkout's code, with tiny training for lock and train."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "modellock"
    tiny = " ".join(TINY_TRAINING)
    script.write_text(f'#!/usr/bin/env bash\ncase "$1" in lock|train) exec "{sys.executable}" -m modellock "$@" {tiny};; '
                      f'*) exec "{sys.executable}" -m modellock "$@";; esac\n')
    script.chmod(0o755)
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b['file']}:{b['line']}-{b['lang']}" for b in BLOCKS])
def test_readme_block_runs(block, fixture_sets, tmp_path, monkeypatch, one_thread):
    plan = _plan(block)
    if plan["skip"]:
        pytest.skip(f"{block['file']} line {block['line']}: {plan['skip']}")
    work = _block_folder(tmp_path, fixture_sets(plan["fixtures"]), block["code"])
    if block["lang"] == "bash":
        proc = subprocess.run(["bash", "-e", "-c", block["code"]], cwd=work, env=_modellock_on_path(tmp_path),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{block['file']} line {block['line']}:\n{block['code']}\n{proc.stderr[-3000:]}"
    else:  # as a reader would paste it: nothing defined beforehand but the files
        monkeypatch.chdir(work)
        code = compile(block["code"], f"{block['file']}:{block['line']}", "exec")
        exec(code, {"__name__": "readme_snippet"})
