"""gradprobe.data.cifar10: CIFAR-10 sources, restricted unpickling, cache, download, errors."""

import ast
import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gradprobe.data.cifar10 as data
from gradprobe.data.cifar10 import CIFAR10_CLASSES, DataError, cifar10, to_tensor

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test gets its own cache folder and no ambient data folder or offline switch."""
    monkeypatch.setenv("GRADPROBE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GRADPROBE_DATA", str(tmp_path / "no-data-here"))
    monkeypatch.delenv("GRADPROBE_OFFLINE", raising=False)


def fake_set(n_per_class, seed):
    """Random uint8 images [10 * n, 32, 32, 3] and labels, class by class."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (10 * n_per_class, 32, 32, 3), dtype=np.uint8)
    return images, np.repeat(np.arange(10, dtype=np.int64), n_per_class)


def write_tree(base, n=2, skip=None, suffix="png"):
    """Write ``base/<split>/<class>/NNNN.png``; return {split: (images, labels)}."""
    expected = {}
    for seed, split in enumerate(("train", "test")):
        images, labels = fake_set(n, seed)
        for i, (image, label) in enumerate(zip(images, labels)):
            if (split, CIFAR10_CLASSES[label]) == skip:
                continue
            folder = base / split / CIFAR10_CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:04d}.{suffix}")
        expected[split] = (images, labels)
    return expected


def tar_tree(tree, archive, prefix=""):
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(tree.rglob("*")):
            tar.add(path, arcname=prefix + path.relative_to(tree).as_posix(), recursive=False)
    return archive


def write_batches(folder, n=3):
    """An official-format release (protocol-2 pickles of dicts with bytes keys)."""
    folder.mkdir(parents=True)
    expected = {}
    for split, names in data._BATCHES.items():
        parts = []
        for seed, name in enumerate(names):
            images, labels = fake_set(n, seed + (10 if split == "test" else 0))
            batch = {b"batch_label": name.encode(), b"labels": labels.tolist(),
                     b"data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072),
                     b"filenames": [b"x.png"] * len(images)}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
            parts.append((images, labels))
        expected[split] = (np.concatenate([p[0] for p in parts]),
                           np.concatenate([p[1] for p in parts]))
    return expected


def official_tar(tmp_path, archive):
    expected = write_batches(tmp_path / "src" / data.OFFICIAL_FOLDER)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / data.OFFICIAL_FOLDER, arcname=data.OFFICIAL_FOLDER)
    return expected


def check(result, expected):
    images, labels = result
    assert images.dtype == np.uint8 and images.shape == expected[0].shape
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])


# ----------------------------------------------------------------------------- sources

def test_image_tar_loads_both_splits(tmp_path):
    expected = write_tree(tmp_path / "tree")
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "README").write_text("not CIFAR-10")
    with tarfile.open(root / "aaa-unrelated.tar.gz", "w:gz") as tar:  # skipped: no image tree
        tar.add(tmp_path / "README", arcname="README")
    tar_tree(tmp_path / "tree", root / "anything.tar.gz", prefix="cifar10/")
    before = sorted(root.iterdir())
    for split in ("train", "test"):
        check(cifar10(split, root=root, allow_subset=True), expected[split])
    assert sorted(root.iterdir()) == before  # nothing written into the data folder
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4  # both splits from one pass


def test_named_archive_is_preferred_and_jpeg_decodes(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    expected = write_tree(tmp_path / "tree", suffix="jpg")
    tar_tree(tmp_path / "tree", root / "cifar10-jpeg.tar.gz")
    write_tree(tmp_path / "other", n=1)
    tar_tree(tmp_path / "other", root / "a.tar.gz")  # sorts first, but the named one wins
    images, labels = cifar10("test", root=root, allow_subset=True)
    assert images.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(labels, expected["test"][1])
    # JPEG is lossy (and noise its worst case), but keeps each image's mean colour
    np.testing.assert_allclose(images.mean(axis=(1, 2)), expected["test"][0].mean(axis=(1, 2)),
                               atol=4)


@pytest.mark.parametrize("sub", ["cifar10", "."])
def test_plain_image_folder(tmp_path, sub):
    expected = write_tree(tmp_path / "root" / sub)
    for split in ("train", "test"):
        check(cifar10(split, root=tmp_path / "root", allow_subset=True), expected[split])


@pytest.mark.parametrize("packed", [False, True])
def test_official_release(tmp_path, packed):
    root = tmp_path / "root"
    if packed:
        root.mkdir()
        expected = official_tar(tmp_path, root / data.OFFICIAL_ARCHIVE)
    else:
        expected = write_batches(root / data.OFFICIAL_FOLDER)
    train, test = cifar10("train", root=root, allow_subset=True), cifar10("test", root=root, allow_subset=True)
    check(train, expected["train"])
    check(test, expected["test"])
    assert train[0].shape == (150, 32, 32, 3) and train[0].flags.c_contiguous
    # HWC order: pixel (row 0, col 1) of image 0 is bytes 1, 1025, 2049 of its CHW row
    src = (tmp_path / "src" if packed else root) / data.OFFICIAL_FOLDER / "data_batch_1"
    row = pickle.loads(src.read_bytes(), encoding="bytes")[b"data"][0]
    assert train[0][0, 0, 1].tolist() == [row[1], row[1025], row[2049]]


def test_root_from_environment(tmp_path, monkeypatch):
    expected = write_tree(tmp_path / "env-root" / "cifar10")
    monkeypatch.setenv("GRADPROBE_DATA", str(tmp_path / "env-root"))
    check(cifar10("test", allow_subset=True), expected["test"])


# ----------------------------------------------------------------------------- unpickling

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _Evil(marker)}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        data._RestrictedUnpickler(io.BytesIO(payload), encoding="bytes").load()
    write_batches(tmp_path / "root" / data.OFFICIAL_FOLDER)
    (tmp_path / "root" / data.OFFICIAL_FOLDER / "test_batch").write_bytes(payload)
    with pytest.raises(DataError, match="test_batch.*refusing to load") as info:
        cifar10("test", root=tmp_path / "root")
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    assert not marker.exists()


# ----------------------------------------------------------------------------- cache

def test_cache_hit_and_invalidation(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    expected = write_tree(tmp_path / "tree")
    archive = tar_tree(tmp_path / "tree", root / "cifar10-jpeg.tar.gz")
    check(cifar10("train", root=root, allow_subset=True), expected["train"])

    def no_decoding(*args):
        raise AssertionError("decoded again")
    monkeypatch.setattr(data, "_decode_image", no_decoding)
    check(cifar10("train", root=root, allow_subset=True), expected["train"])  # from the cache
    check(cifar10("test", root=root, allow_subset=True), expected["test"])  # cached by the same pass
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        cifar10("train", root=root)


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    write_tree(tmp_path / "root" / "cifar10", n=1)
    real_save = np.save

    def save_then_die(file, array, *args, **kwargs):
        file.write(b"half a file")
        raise RuntimeError("killed mid-write")
    monkeypatch.setattr(np, "save", save_then_die)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        cifar10("train", root=tmp_path / "root")
    assert list((tmp_path / "cache").iterdir()) == []

    def disk_full(file, array, *args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "save", disk_full)
    with pytest.warns(UserWarning, match="could not cache"):
        images, _ = cifar10("train", root=tmp_path / "root", allow_subset=True)
    assert images.shape == (10, 32, 32, 3)
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setattr(np, "save", real_save)
    cifar10("train", root=tmp_path / "root", allow_subset=True)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


@pytest.mark.parametrize("damage", ["zero-length", "truncated", "garbled", "labels zero-length"])
def test_an_unreadable_cache_file_is_decoded_again_and_replaced(tmp_path, damage):
    """Issue 16, defect 5: a real zero-length (or truncated, or garbled) cache file."""
    expected = write_tree(tmp_path / "root" / "cifar10", n=1)
    check(cifar10("train", root=tmp_path / "root", allow_subset=True), expected["train"])
    [images] = (tmp_path / "cache").glob("cifar10-train-*-images.npy")
    target = images.with_name(images.name.replace("-images", "-labels")) if damage.startswith("labels") else images
    whole = target.read_bytes()
    target.write_bytes({"truncated": whole[: len(whole) // 2], "garbled": b"PK\x03\x04 not an array"}.get(
        damage.split()[-1], b""))
    with pytest.warns(UserWarning, match=f"cached CIFAR-10 file {target} is unreadable"):
        check(cifar10("train", root=tmp_path / "root", allow_subset=True), expected["train"])
    assert target.read_bytes() == whole, "the damaged file is replaced"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(cifar10("train", root=tmp_path / "root", allow_subset=True), expected["train"])


def _in_read_only_mount(folder: Path, code: str, env: dict) -> subprocess.CompletedProcess:
    """Run python ``code`` with ``folder`` on a read-only filesystem: a read-only bind mount of it in
    a private mount namespace (``unshare``), seen by that process only. For the process this is a
    real read-only filesystem (writes fail with EROFS, for root too, unlike chmod), and nothing
    outside it changes."""
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        unshare[1:1] = ["--user", "--map-root-user"]
    probe = subprocess.run(unshare + ["true"], capture_output=True, text=True)
    if shutil.which("unshare") is None or probe.returncode != 0:
        reason = f"needs a private mount namespace (unshare): {probe.stderr.strip()}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and the test {reason}")
        pytest.skip(reason)
    script = 'mount --bind "$RO" "$RO" && mount -o remount,bind,ro "$RO" && exec "$PY" -c "$CODE"'
    return subprocess.run(unshare + ["sh", "-c", script], capture_output=True, text=True,
                          env=os.environ | env | {"RO": str(folder), "PY": sys.executable, "CODE": code})


def test_a_read_only_cache_folder_warns_once_and_loads(tmp_path):
    """Issue 16, defect 5: the cache folder on a real read-only filesystem (see _in_read_only_mount)."""
    root, cache = tmp_path / "root", tmp_path / "cache"
    root.mkdir()
    expected = write_tree(tmp_path / "tree", n=1)
    tar_tree(tmp_path / "tree", root / "cifar10-jpeg.tar.gz")
    cache.mkdir()
    stale = cache / ".cifar10-train-0-images.npy.1.0.tmp"  # left by a killed process, not removable here
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200,) * 2)
    code = textwrap.dedent(f"""
        import json, warnings
        from gradprobe.data.cifar10 import cifar10
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = [cifar10(s, root={str(root)!r}, allow_subset=True) for s in ("train", "test", "train")]
        print(json.dumps({{"warnings": [str(w.message) for w in caught],
                          "images": [x.tolist() for x, _ in loaded]}}))
    """)
    done = _in_read_only_mount(cache, code, {"GRADPROBE_CACHE": str(cache)})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    [warning] = result["warnings"]
    assert f"could not cache CIFAR-10 in {cache}" in warning and "Read-only file system" in warning
    for got, split in zip(result["images"], ("train", "test", "train")):
        np.testing.assert_array_equal(np.array(got, dtype=np.uint8), expected[split][0])
    assert [p.name for p in cache.iterdir()] == [stale.name]


def test_temporary_files_of_a_killed_process_are_removed_after_an_hour(tmp_path):
    """Issue 16, defect 5: a process killed (SIGKILL) while writing the cache leaves its hidden
    temporary file; the next load removes it once it is an hour old, but not a fresh one."""
    write_tree(tmp_path / "root" / "cifar10", n=1)
    code = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from gradprobe.data.cifar10 import cifar10
        def save_then_die(file, array, *args, **kwargs):
            file.write(b"x" * (1 << 20))
            file.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        np.save = save_then_die
        cifar10("train", root={str(tmp_path / "root")!r}, allow_subset=True)
    """)
    killed = subprocess.run([sys.executable, "-c", code], env=os.environ | {"GRADPROBE_CACHE": str(tmp_path / "cache")})
    assert killed.returncode == -signal.SIGKILL
    [left] = (tmp_path / "cache").glob(".cifar10-*.tmp")
    assert left.stat().st_size == 1 << 20
    os.utime(left, (time.time() - 3700,) * 2)  # an hour later
    fresh = left.with_name(".cifar10-test-0-images.npy.99.00.tmp")  # another process writing right now
    fresh.write_bytes(b"x")
    part = tmp_path / "cache" / f".{data.OFFICIAL_ARCHIVE}.7.ab.part"  # a download killed an hour ago
    part.write_bytes(b"x")
    os.utime(part, (time.time() - 3700,) * 2)
    cifar10("train", root=tmp_path / "root", allow_subset=True)
    assert not left.exists() and not part.exists()
    assert fresh.exists()


# ----------------------------------------------------------------------------- what is checked

def test_a_hand_placed_official_archive_is_verified_once(tmp_path, monkeypatch):
    """Issue 16, defect 6: a cifar-10-python.tar.gz with another checksum is refused; one with the
    right checksum is checked once per version of the file (path, size, modification time)."""
    root = tmp_path / "root"
    root.mkdir()
    archive = root / data.OFFICIAL_ARCHIVE
    expected = official_tar(tmp_path, archive)
    with pytest.raises(DataError, match=r"not the official release \(md5 [0-9a-f]{32}, expected "
                                        f"{data.MD5}\\).*allow_subset=True"):
        cifar10("test", root=root)
    check(cifar10("test", root=root, allow_subset=True), expected["test"])  # a subset, asked for

    monkeypatch.setattr(data, "MD5", hashlib.md5(archive.read_bytes()).hexdigest())  # as if it were the release
    hashed = []
    real_md5 = data._md5
    monkeypatch.setattr(data, "_md5", lambda path: hashed.append(path) or real_md5(path))
    with pytest.raises(DataError, match="holds 30 test images .3 per class.; the full CIFAR-10 test split has "
                                        "10,000 .1,000 per class.*allow_subset=True"):
        cifar10("test", root=root)  # the right checksum, but not 10,000 images: counted
    assert len(hashed) == 1
    check(cifar10("test", root=root, allow_subset=True), expected["test"])
    data._VERIFIED.clear()  # a new process: the verification is remembered in the cache folder
    check(cifar10("train", root=root, allow_subset=True), expected["train"])
    assert len(hashed) == 1
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))  # copied again
    cifar10("test", root=root, allow_subset=True)
    assert len(hashed) == 2


@pytest.mark.parametrize("packed", [False, True])
def test_an_image_tree_with_other_counts_is_refused_unless_a_subset_is_asked(tmp_path, packed):
    """Issue 16, defect 6: 3 images per class are not CIFAR-10, unless the caller says allow_subset=True."""
    root = tmp_path / "root"
    expected = write_tree(tmp_path / "tree" if packed else root / "cifar10", n=3)
    if packed:
        root.mkdir()
        tar_tree(tmp_path / "tree", root / "cifar10-jpeg.tar.gz")
    with pytest.raises(DataError, match=r"holds 30 train images \(3 per class\); the full CIFAR-10 train split "
                                        r"has 50,000 \(5,000 per class\)\..*pass allow_subset=True"):
        cifar10("train", root=root)
    check(cifar10("train", root=root, allow_subset=True), expected["train"])
    with pytest.raises(DataError, match="holds 30 test images"):
        cifar10("test", root=root)  # from the cache: still counted
    with pytest.raises(ValueError, match="allow_subset must be True or False"):
        cifar10("train", root=root, allow_subset="yes")


def test_data_identity_names_the_data_and_ignores_the_cache(tmp_path, monkeypatch):
    root = tmp_path / "root"
    write_tree(root / "cifar10", n=1)
    (root / "vgg19_bn.pth").write_bytes(b"weights")
    monkeypatch.setenv("GRADPROBE_CACHE", str(root))  # the data folder is also the cache folder
    before = data.data_identity(root)
    assert f"data folder {root}" in before and "source image-folder" in before and "vgg19_bn.pth" in before
    cifar10("train", root=root, allow_subset=True)  # writes cache files into the data folder
    assert data.data_identity(root) == before
    image = root / "cifar10" / "train" / "cat" / "0003.png"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    assert data.data_identity(root) != before
    assert "no CIFAR-10 source" in data.data_identity(tmp_path / "nothing")


# ----------------------------------------------------------------------------- CI and the tests themselves

def test_ci_uses_a_cache_folder_of_its_own(tmp_path):
    """Issue 16, defect 7: .ci/run sets GRADPROBE_CACHE (a fresh folder, removed afterwards), so CI
    never reads ~/.cache/gradprobe. `make` (and apt-get, sudo) are stand-ins that report."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    report = tmp_path / "report"
    (bin_dir / "make").write_text(f'#!/bin/sh\necho "$GRADPROBE_CACHE|$GRADPROBE_SWEEPS|$*" > {report}\n'
                                  'test -d "$GRADPROBE_CACHE" && touch "$GRADPROBE_CACHE/written"\n')
    for name in ("apt-get", "sudo"):
        (bin_dir / name).write_text('#!/bin/sh\n[ "$1" = apt-get ] && shift; exit 0\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("GRADPROBE_CACHE", "GRADPROBE_SWEEPS")}
    done = subprocess.run([str(REPO / ".ci" / "run")], env=env | {"PATH": f"{bin_dir}:{env['PATH']}",
                                                                  "HOME": str(tmp_path / "home")},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    cache, sweeps, args = report.read_text().strip().split("|")
    assert args == "test" and cache and not sweeps, "sweeps are stored with each run, not in one CI-wide folder"
    assert not Path(cache).is_relative_to(tmp_path / "home"), "not the user's ~/.cache"
    assert not Path(cache).exists(), "the CI run's own cache folder is removed afterwards"


def test_no_test_turns_a_loader_error_into_a_skip():
    """Issue 16, defect 7: a test that skips when CIFAR-10 is absent catches DataNotFound only, never
    every exception (a broken cache or archive would then pass unnoticed as a skip)."""
    offenders = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Try):
                continue
            calls = {getattr(n.func, "id", getattr(n.func, "attr", None)) for stmt in node.body
                     for n in ast.walk(stmt) if isinstance(n, ast.Call)}
            if not calls & {"cifar10", "cifar10_tensors"}:
                continue
            for handler in node.handlers:
                names = {getattr(n, "id", getattr(n, "attr", None)) for n in ast.walk(handler.type)} \
                    if handler.type is not None else {"BaseException"}
                skips = any(isinstance(n, ast.Attribute) and n.attr == "skip" for n in ast.walk(handler))
                if skips and names & {"Exception", "BaseException", "DataError"}:
                    offenders.append(f"{path.relative_to(REPO)}:{handler.lineno}")
    assert not offenders, ("catch gradprobe.data.cifar10.DataNotFound (no data) to skip, not every error: "
                           + ", ".join(offenders))


# ----------------------------------------------------------------------------- download

class _Response(io.BytesIO):
    def __init__(self, body):
        super().__init__(body)
        self.headers = {"Content-Length": str(len(body))}


def test_download_verifies_checksum(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _Response(b"not cifar"))
    with pytest.raises(DataError, match="checksum mismatch"):
        cifar10("test", root=tmp_path / "root", download=True)
    assert list((tmp_path / "root").iterdir()) == []  # bad download deleted


def test_download_then_load(tmp_path, monkeypatch):
    expected = official_tar(tmp_path, tmp_path / "served.tar.gz")
    body = (tmp_path / "served.tar.gz").read_bytes()
    monkeypatch.setattr(data, "MD5", hashlib.md5(body).hexdigest())
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _Response(body))
    check(cifar10("test", root=tmp_path / "root", allow_subset=True), expected["test"])
    assert [p.name for p in (tmp_path / "root").iterdir()] == [data.OFFICIAL_ARCHIVE]


def test_network_failure_is_one_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "root"
    with pytest.raises(DataError, match="name resolution") as info:
        cifar10("train", root=root)
    assert str(root) in str(info.value) and "GRADPROBE_DATA" in str(info.value)
    assert list(root.iterdir()) == []


def test_no_download_names_root(tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("tried the network")
    monkeypatch.setattr(urllib.request, "urlopen", never)
    root = tmp_path / "empty"
    root.mkdir()
    for kwargs in ({"download": False}, {}):
        if not kwargs:
            monkeypatch.setenv("GRADPROBE_OFFLINE", "1")
        with pytest.raises(DataError, match="GRADPROBE_DATA") as info:
            cifar10("train", root=root, **kwargs)
        assert str(root) in str(info.value) and data.OFFICIAL_ARCHIVE in str(info.value)
        assert isinstance(info.value, data.DataNotFound), "no data at all: a DataNotFound, which tests may skip on"


# ----------------------------------------------------------------------------- bad data

def test_truncated_archive(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    write_tree(tmp_path / "tree", n=5)
    tar_tree(tmp_path / "tree", tmp_path / "whole.tar.gz")
    whole = (tmp_path / "whole.tar.gz").read_bytes()
    (root / "cifar10-jpeg.tar.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        cifar10("train", root=root)
    assert str(root / "cifar10-jpeg.tar.gz") in str(info.value)
    (root / "cifar10-jpeg.tar.gz").unlink()
    official_tar(tmp_path, tmp_path / "official.tar.gz")
    whole = (tmp_path / "official.tar.gz").read_bytes()
    (root / data.OFFICIAL_ARCHIVE).write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        cifar10("train", root=root)


def test_missing_class(tmp_path):
    write_tree(tmp_path / "tree", skip=("train", "cat"))
    (tmp_path / "root").mkdir()
    tar_tree(tmp_path / "tree", tmp_path / "root" / "c.tar.gz")
    with pytest.raises(DataError, match="'cat'"):
        cifar10("train", root=tmp_path / "root")
    write_tree(tmp_path / "plain" / "cifar10", skip=("test", "dog"))
    with pytest.raises(DataError, match=r"test/dog is missing"):
        cifar10("test", root=tmp_path / "plain")
    (tmp_path / "plain" / "cifar10" / "test" / "dog").mkdir()
    with pytest.raises(DataError, match=r"test/dog holds no"):
        cifar10("test", root=tmp_path / "plain")


def test_wrong_size_and_unreadable_image(tmp_path):
    write_tree(tmp_path / "root" / "cifar10", n=1)
    bad = tmp_path / "root" / "cifar10" / "train" / "frog" / "0006.png"
    Image.new("RGB", (31, 32)).save(bad)
    with pytest.raises(DataError, match=r"0006\.png is 31x32"):
        cifar10("train", root=tmp_path / "root")
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"0006\.png is not a readable image"):
        cifar10("train", root=tmp_path / "root")


def test_path_traversal_members_are_ignored(tmp_path):
    expected = write_tree(tmp_path / "tree", n=1)
    root = tmp_path / "root"
    root.mkdir()
    archive = tar_tree(tmp_path / "tree", root / "cifar10-jpeg.tar.gz")
    evil = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(evil, format="PNG")
    with tarfile.open(archive, "w:gz") as tar:  # rewrite with hostile members added
        for name in ("../evil.png", "train/../../evil.png", "/tmp/evil.png"):
            info = tarfile.TarInfo(name)
            info.size = len(evil.getvalue())
            tar.addfile(info, io.BytesIO(evil.getvalue()))
        tar.add(tmp_path / "tree", arcname=".")
    check(cifar10("train", root=root, allow_subset=True), expected["train"])
    assert not list(tmp_path.rglob("evil.png"))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="'train', 'test'"):
        cifar10("validation")
    with pytest.raises(ValueError, match="download"):
        cifar10("train", download="yes")
    (tmp_path / "f.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match="is a file"):
        cifar10("train", root=tmp_path / "f.tar.gz")


# ----------------------------------------------------------------------------- to_tensor

def test_to_tensor():
    images = np.zeros((2, 32, 32, 3), np.uint8)
    images[1, 3, 4] = (255, 51, 0)
    x = to_tensor(images)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 32, 32) and x.is_contiguous()
    assert x[1, :, 3, 4].tolist() == pytest.approx([1.0, 0.2, 0.0])
    z = to_tensor(images, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    assert z[1, :, 3, 4].tolist() == pytest.approx([1.0, -1.2, -0.5])
    for bad in (images.astype(np.float32), images[0], [1, 2]):
        with pytest.raises(ValueError, match="uint8"):
            to_tensor(bad)
    with pytest.raises(ValueError, match="both"):
        to_tensor(images, mean=data.CIFAR10_MEAN)
    with pytest.raises(ValueError, match="3 values"):
        to_tensor(images, mean=(0.5,) * 2, std=(1.0,) * 2)
    with pytest.raises(ValueError, match="positive"):
        to_tensor(images, mean=(0.5,) * 3, std=(1.0, 0.0, 1.0))


# ----------------------------------------------------------------------------- real data

_REAL = Path(os.environ.get("GRADPROBE_DATA", "")) / "cifar10-jpeg.tar.gz"
_USER_CACHE = os.environ.get("GRADPROBE_CACHE")


@pytest.mark.slow
@pytest.mark.skipif(not _REAL.is_file(), reason="GRADPROBE_DATA holds no cifar10-jpeg.tar.gz")
def test_real_cifar10(monkeypatch):
    monkeypatch.setenv("GRADPROBE_DATA", str(_REAL.parent))
    # The user's own cache (not a temporary one), so that only the first run decodes.
    if _USER_CACHE:
        monkeypatch.setenv("GRADPROBE_CACHE", _USER_CACHE)
    else:
        monkeypatch.delenv("GRADPROBE_CACHE")
    train_x, train_y = cifar10("train")
    test_x, test_y = cifar10("test")
    assert train_x.shape == (50000, 32, 32, 3) and test_x.shape == (10000, 32, 32, 3)
    assert train_x.dtype == np.uint8 and train_y.dtype == np.int64
    assert np.bincount(train_y).tolist() == [5000] * 10
    assert np.bincount(test_y).tolist() == [1000] * 10
    mean = train_x.reshape(-1, 3).mean(axis=0) / 255
    np.testing.assert_allclose(mean, [0.4913, 0.4821, 0.4465], atol=0.002)
