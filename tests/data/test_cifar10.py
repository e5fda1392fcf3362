"""gradprobe.data.cifar10: CIFAR-10 sources, restricted unpickling, cache, download, errors."""

import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gradprobe.data.cifar10 as data
from gradprobe.data.cifar10 import CIFAR10_CLASSES, DataError, cifar10, to_tensor


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
        check(cifar10(split, root=root), expected[split])
    assert sorted(root.iterdir()) == before  # nothing written into the data folder
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4  # both splits from one pass


def test_named_archive_is_preferred_and_jpeg_decodes(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    expected = write_tree(tmp_path / "tree", suffix="jpg")
    tar_tree(tmp_path / "tree", root / "cifar10-jpeg.tar.gz")
    write_tree(tmp_path / "other", n=1)
    tar_tree(tmp_path / "other", root / "a.tar.gz")  # sorts first, but the named one wins
    images, labels = cifar10("test", root=root)
    assert images.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(labels, expected["test"][1])
    # JPEG is lossy (and noise its worst case), but keeps each image's mean colour
    np.testing.assert_allclose(images.mean(axis=(1, 2)), expected["test"][0].mean(axis=(1, 2)),
                               atol=4)


@pytest.mark.parametrize("sub", ["cifar10", "."])
def test_plain_image_folder(tmp_path, sub):
    expected = write_tree(tmp_path / "root" / sub)
    for split in ("train", "test"):
        check(cifar10(split, root=tmp_path / "root"), expected[split])


@pytest.mark.parametrize("packed", [False, True])
def test_official_release(tmp_path, packed):
    root = tmp_path / "root"
    if packed:
        root.mkdir()
        expected = official_tar(tmp_path, root / data.OFFICIAL_ARCHIVE)
    else:
        expected = write_batches(root / data.OFFICIAL_FOLDER)
    train, test = cifar10("train", root=root), cifar10("test", root=root)
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
    check(cifar10("test"), expected["test"])


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
    check(cifar10("train", root=root), expected["train"])

    def no_decoding(*args):
        raise AssertionError("decoded again")
    monkeypatch.setattr(data, "_decode_image", no_decoding)
    check(cifar10("train", root=root), expected["train"])  # from the cache
    check(cifar10("test", root=root), expected["test"])  # cached by the same pass
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
        images, _ = cifar10("train", root=tmp_path / "root")
    assert images.shape == (10, 32, 32, 3)
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setattr(np, "save", real_save)
    cifar10("train", root=tmp_path / "root")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


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
    check(cifar10("test", root=tmp_path / "root"), expected["test"])
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
    check(cifar10("train", root=root), expected["train"])
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
