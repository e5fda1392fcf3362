"""CIFAR-10 for the book's chapters: find it, decode it once, cache the arrays.

``cifar10(split)`` returns ``(images, labels)``: uint8 images [N, 32, 32, 3] (HWC, RGB) and
int64 labels [N], in CIFAR-10's label order (``CIFAR10_CLASSES``). ``to_tensor`` turns a
slice of the images into a float32 torch batch [N, 3, 32, 32].

Where the data comes from. The data folder ``root`` is the argument, else ``$GRADPROBE_DATA``,
else ``~/.cache/gradprobe``. The first of these that exists is used:

1. ``root/cifar-10-batches-py/``: the official python release, unpacked;
2. ``root/cifar-10-python.tar.gz``: the official python release, packed;
3. an image-folder tree ``<split>/<class>/*.{jpg,jpeg,png}``, as a plain folder at
   ``root/cifar10/`` or else at ``root/`` itself (the first that has a ``train/`` or
   ``test/`` folder);
4. a ``*.tar.gz`` in ``root`` that holds such a tree, optionally under one top folder
   (``[top/]<split>/<class>/<file>``): ``cifar10-jpeg.tar.gz`` is tried first, then the others
   in name order; an archive counts when one of its first 100 members fits that pattern;
5. ``cifar-10-python.tar.gz`` in the cache folder (where a download lands if root is read-only).

If none exists, the official archive is downloaded from ``URL`` into ``root`` (or the cache
folder when ``root`` is not writable) and its MD5 checked before use. ``download=None`` means
"download unless ``$GRADPROBE_OFFLINE`` is set to something other than ``0``".

Archives are read member by member, in one streaming pass, and never extracted, so no path in
them is ever written to disk. A ``*.tar.gz`` in ``root`` that cannot be read at all is reported
as an error, not skipped.

What is checked. ``cifar10`` returns the full splits only: 50,000 training and 10,000 test images,
5,000 and 1,000 per class; any other count is refused with a ``DataError`` unless the caller asks
for a subset with ``allow_subset=True`` (tests, small experiments). An official
``cifar-10-python.tar.gz``, downloaded or placed by hand, must have the release's MD5; it is
checked once per version of the file (its path, size and modification time, remembered in the
cache folder), so later loads do not read it again. With ``allow_subset=True`` an archive with
another checksum is accepted when its batches decode.

The cache. The decoded arrays are cached as ``.npy`` files in ``$GRADPROBE_CACHE`` (else
``~/.cache/gradprobe``), named after a hash of the source's absolute path, size and modification
time, so a changed source is decoded afresh and a later load takes well under a second. Cache
files are written to a hidden temporary file and renamed, so an interrupted run never leaves a
half-written cache; temporary files that a killed process left behind are removed once they are
an hour old. A cache file that cannot be read (empty, truncated, garbled) is decoded again and
replaced, with a warning. A cache folder that cannot be written (read-only, full) gives one
warning per folder and process, and the data is loaded all the same.

``data_identity()`` names the data a load would read (for the input stamps of
:mod:`gradprobe.book.runner`). ``DataNotFound``, a ``DataError``, means that no data is there at
all (as opposed to data that is there but broken).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib
import io
import os
import pickle
import re
import tarfile
import time
import urllib.request
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

__all__ = ["CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "DataError", "DataNotFound", "cifar10",
           "data_identity", "to_tensor"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
#: Per-channel mean and standard deviation of the official training set, on the [0, 1] scale.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

SPLITS = ("train", "test")
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
OFFICIAL_ARCHIVE = "cifar-10-python.tar.gz"
OFFICIAL_FOLDER = "cifar-10-batches-py"
_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
#: Images in each full split (a tenth of them per class).
SPLIT_SIZES = {"train": 50_000, "test": 10_000}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_DEFAULT_DIR = Path("~/.cache/gradprobe")
_CACHE_VERSION = 1  # bump when decoding changes, so old caches are not reused
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)
_STALE_AFTER_S = 3600  # a temporary file untouched this long belongs to a killed process


class DataError(ValueError):
    """CIFAR-10 could not be found, fetched or read; the message names the path and the fix."""


class DataNotFound(DataError):
    """No CIFAR-10 data at all in the data folder (and none downloaded): nothing is broken."""


# ----------------------------------------------------------------------------- public API

def cifar10(split="train", root=None, download=None, allow_subset=False):
    """Load one CIFAR-10 split as ``(images, labels)`` numpy arrays.

    ``images`` is uint8 [N, 32, 32, 3] (HWC, RGB) and ``labels`` int64 [N], sorted by label
    and then file name for image-folder sources, in batch order for the official release.
    ``split`` is ``"train"`` or ``"test"``; ``root`` is the data folder (default
    ``$GRADPROBE_DATA``, else ``~/.cache/gradprobe``); ``download`` says whether the official
    archive may be fetched when no data is found (``None``: yes, unless ``$GRADPROBE_OFFLINE``
    is set). ``allow_subset=True`` accepts data with fewer (or more) images than the full split
    (N is 50,000 for train and 10,000 for test otherwise), and an official-format archive whose
    checksum is not the release's. See the module docstring for where data is looked for, what
    is checked and how it is cached.
    Raises ``ValueError`` for bad arguments, ``DataNotFound`` when there is no data and it may
    not be downloaded, and ``DataError`` when the data cannot be had or is not CIFAR-10.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if download not in (None, True, False):
        raise ValueError(f"download must be None, True or False, got {download!r}")
    if allow_subset not in (True, False):
        raise ValueError(f"allow_subset must be True or False, got {allow_subset!r}")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"root must be a path or None, got {type(root).__name__}")
    root = Path(root).expanduser() if root is not None else _env_dir("GRADPROBE_DATA")
    cache = _env_dir("GRADPROBE_CACHE")
    if root.is_file():
        raise DataError(f"{root} is a file; root (or GRADPROBE_DATA) must name the folder "
                        f"that holds it, e.g. {root.parent}")
    if download is None:
        download = os.environ.get("GRADPROBE_OFFLINE", "") in ("", "0")
    for folder in {root, cache}:
        _remove_stale_temporaries(folder)
    source = _find_source(root, cache)
    if source is None:
        if not download:
            raise DataNotFound(_not_found(root, "downloading is off (download=False or "
                                                "GRADPROBE_OFFLINE is set)"))
        source = ("official-tar", _download(root, cache))
    kind, path = source
    if kind == "official-tar":
        _verify_official_archive(path, cache, allow_subset)
    loader = {"official-folder": _load_official_folder, "official-tar": _load_official_tar,
              "image-folder": _load_image_folder, "image-tar": _load_image_tar}[kind]
    images, labels = loader(path, split, cache)
    if not allow_subset:
        _check_full_split(images, labels, split, path)
    return images, labels


def data_identity(root=None):
    """A text that changes whenever the data a load from ``root`` would read changes.

    It names the data folder (``root``, else ``$GRADPROBE_DATA``, else ``~/.cache/gradprobe``),
    its visible top-level files with their sizes and modification times (model checkpoints kept
    beside the data count too), and the CIFAR-10 source found there with the cache key of its
    contents. Nothing is decoded or downloaded; an unreadable source is named, not raised.
    """
    root = Path(root).expanduser() if root is not None else _env_dir("GRADPROBE_DATA")
    cache = _env_dir("GRADPROBE_CACHE")
    lines = [f"data folder {os.path.abspath(root)}"]
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if entry.is_file() and not entry.name.startswith(".") and not _is_cache_file(entry.name):
                st = entry.stat()
                lines.append(f"file {entry.name} {st.st_size} {st.st_mtime_ns}")
    try:
        source = _find_source(root, cache)
        if source is None:
            lines.append("no CIFAR-10 source")
        else:
            kind, path = source
            lines.append(f"source {kind} {os.path.abspath(path)} {_source_key(kind, path)}")
    except (DataError, OSError) as e:
        lines.append(f"unreadable source: {e}")
    return "\n".join(lines)


def to_tensor(images, mean=None, std=None):
    """Convert a uint8 HWC batch [N, H, W, C] to a float32 torch tensor [N, C, H, W] in [0, 1].

    With ``mean`` and ``std`` (one value per channel, on the [0, 1] scale, e.g.
    ``CIFAR10_MEAN`` and ``CIFAR10_STD``) each channel is standardized as ``(x - mean) / std``.
    Pass a slice of the data set: the result takes four times the memory of its input.
    """
    import torch

    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        got = (f"{images.dtype} array of shape {images.shape}" if isinstance(images, np.ndarray)
               else type(images).__name__)
        raise ValueError(f"images must be a uint8 numpy array [N, H, W, C], got {got} "
                         "(for one image pass images[None])")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32))
    x.div_(255.0)
    if mean is not None:
        channels = images.shape[3]
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean.numel() != channels or std.numel() != channels:
            raise ValueError(f"mean and std need {channels} values each (one per channel), "
                             f"got {mean.numel()} and {std.numel()}")
        if not bool((std > 0).all()):
            raise ValueError(f"std must be positive, got {std.tolist()}")
        x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
    return x


# ----------------------------------------------------------------------------- finding data

def _env_dir(var):
    value = os.environ.get(var, "")
    return Path(value or _DEFAULT_DIR).expanduser()


def _find_source(root, cache):
    """Return ``(kind, path)`` for the first source found (see module docstring), or None."""
    if (root / OFFICIAL_FOLDER).is_dir():
        return "official-folder", root / OFFICIAL_FOLDER
    if (root / OFFICIAL_ARCHIVE).is_file():
        return "official-tar", root / OFFICIAL_ARCHIVE
    for folder in (root / "cifar10", root):
        if any((folder / split).is_dir() for split in SPLITS):
            return "image-folder", folder
    if root.is_dir():
        archives = sorted(p for p in root.glob("*.tar.gz")
                          if p.name != OFFICIAL_ARCHIVE and p.is_file())
        archives.sort(key=lambda p: p.name != "cifar10-jpeg.tar.gz")  # stable: that one first
        for archive in archives:
            if _holds_image_tree(archive):
                return "image-tar", archive
    if (cache / OFFICIAL_ARCHIVE).is_file():
        return "official-tar", cache / OFFICIAL_ARCHIVE
    return None


def _not_found(root, why):
    return (f"no CIFAR-10 data in {root} (looked for {OFFICIAL_FOLDER}/, {OFFICIAL_ARCHIVE}, "
            f"cifar10/<split>/<class>/, <split>/<class>/ and *.tar.gz image-folder archives); "
            f"{why}. Place {OFFICIAL_ARCHIVE} (from {URL}) in {root}, or set GRADPROBE_DATA "
            "to the folder that holds the data.")


def _image_member(name):
    """``(split, label)`` for an archive path ``[top/]<split>/<class>/<image>``, else None.

    Absolute paths and paths with ``..`` are never accepted.
    """
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        return None
    if len(parts) == 4:
        parts = parts[1:]
    if len(parts) != 3:
        return None
    split, cls, file = parts
    if (split not in SPLITS or cls not in CIFAR10_CLASSES or file.startswith(".")
            or not file.lower().endswith(_IMAGE_SUFFIXES)):
        return None
    return split, CIFAR10_CLASSES.index(cls)


def _holds_image_tree(archive):
    try:
        with tarfile.open(archive, "r|gz") as tar:
            for i, member in enumerate(tar):
                if member.isfile() and _image_member(member.name):
                    return True
                if i >= 100:
                    return False
    except _ARCHIVE_ERRORS as e:
        raise _corrupt(archive, e) from e
    return False


def _corrupt(path, error):
    return DataError(f"{path} is truncated or corrupt ({type(error).__name__}: {error}); "
                     "delete it and download or copy it again")


# ----------------------------------------------------------------------------- cache

def _key(*entries):
    digest = hashlib.sha256(f"v{_CACHE_VERSION}".encode())
    for entry in entries:
        digest.update(f"{entry}\n".encode())
    return digest.hexdigest()[:16]


def _file_key(path):
    st = path.stat()
    return _key(os.path.abspath(path), st.st_size, st.st_mtime_ns)


def _source_key(kind, path):
    """The cache key of a source's contents (both splits of an image folder)."""
    if kind == "official-folder":
        return _key(*(_file_key(path / name) for names in _BATCHES.values() for name in names
                      if (path / name).is_file()))
    if kind == "image-folder":
        return _key(*(_image_folder_items(path, s)[1] for s in SPLITS if (path / s).is_dir()))
    return _file_key(path)


def _cache_paths(cache, key, split):
    stem = f"cifar10-{split}-{key}"
    return cache / f"{stem}-images.npy", cache / f"{stem}-labels.npy"


def _is_cache_file(name):
    return name.startswith("cifar10-") and (name.endswith(".npy") or "-md5ok-" in name)


_WARNED_CACHES = set()


def _warn_cache(cache, error):
    """Warn once per cache folder and process that the cache cannot be written; loads go on."""
    if str(cache) in _WARNED_CACHES:
        return
    _WARNED_CACHES.add(str(cache))
    warnings.warn(f"could not cache CIFAR-10 in {cache} ({error}); loading without the cache. "
                  "Set GRADPROBE_CACHE to a writable folder to make later loads fast", stacklevel=4)


def _remove_stale_temporaries(folder):
    """Delete the hidden temporary files (cache ``.tmp``, download ``.part``) that a killed
    process left in ``folder``: those untouched for an hour, as a live writer's file never is."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        if (entry.name.startswith((".cifar10-", f".{OFFICIAL_ARCHIVE}."))
                and entry.name.endswith((".tmp", ".part"))):
            with contextlib.suppress(OSError):
                if now - entry.stat(follow_symlinks=False).st_mtime > _STALE_AFTER_S:
                    os.unlink(entry.path)


def _read_npy(path):
    """One cached array, or None (and a warning) when the file cannot be read as one."""
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as e:  # empty, truncated, garbled, an .npz: whatever it is, decode again
        warnings.warn(f"the cached CIFAR-10 file {path} is unreadable ({type(e).__name__}: {e}); "
                      "decoding the data again and replacing it", stacklevel=5)
        return None
    return array if isinstance(array, np.ndarray) else None


def _load_cache(cache, key, split):
    images_path, labels_path = _cache_paths(cache, key, split)
    if not (images_path.is_file() and labels_path.is_file()):
        return None
    images, labels = _read_npy(images_path), _read_npy(labels_path)
    if (images is None or labels is None or images.dtype != np.uint8 or images.ndim != 4
            or images.shape[1:] != (32, 32, 3) or labels.dtype != np.int64
            or labels.shape != images.shape[:1]):
        return None  # decode again; the cache files are replaced
    return images, labels


def _write_npy(path, array):
    """Write ``array`` to a hidden temporary file beside ``path``, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "xb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # on a read-only folder there is nothing to remove
            tmp.unlink(missing_ok=True)
        raise


def _save_cache(cache, key, split, images, labels):
    """Cache both arrays; an OSError (read-only, disk full) only warns, once per folder."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for path, array in zip(_cache_paths(cache, key, split), (images, labels)):
            _write_npy(path, array)
    except OSError as e:
        _warn_cache(cache, e)


def _cached(cache, key, split, decode):
    """Return the cached split, or run ``decode()`` (-> {split: arrays}) and cache its result."""
    hit = _load_cache(cache, key, split)
    if hit is not None:
        return hit
    decoded = decode()
    for name, (images, labels) in decoded.items():
        _save_cache(cache, key, name, images, labels)
    return decoded[split]


# ----------------------------------------------------------------------------- checks

def _check_full_split(images, labels, split, source):
    """Refuse anything but the full split: N images, a tenth of them per class."""
    expected = SPLIT_SIZES[split]
    per_class = np.bincount(labels, minlength=len(CIFAR10_CLASSES)).tolist()
    if len(images) == expected and per_class == [expected // len(CIFAR10_CLASSES)] * len(per_class):
        return
    counts = (f"{per_class[0]:,} per class" if len(set(per_class)) == 1
              else "per class " + ", ".join(f"{n:,}" for n in per_class))
    raise DataError(f"{source} holds {len(images):,} {split} images ({counts}); the full CIFAR-10 "
                    f"{split} split has {expected:,} "
                    f"({expected // len(CIFAR10_CLASSES):,} per class). Replace it with the full data "
                    f"set ({OFFICIAL_ARCHIVE} from {URL}), or pass allow_subset=True to use these "
                    "images as a subset")


_VERIFIED = set()


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _remember_verified(archive, cache):
    key = _file_key(archive)
    _VERIFIED.add(key)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / f"cifar10-md5ok-{key}").write_text(f"{os.path.abspath(archive)} md5 {MD5}\n")
    except OSError as e:
        _warn_cache(cache, e)


def _verify_official_archive(archive, cache, allow_subset):
    """Check an official archive's MD5 once per version of the file (path, size, mtime)."""
    key = _file_key(archive)
    if key in _VERIFIED or (cache / f"cifar10-md5ok-{key}").is_file():
        return
    try:
        digest = _md5(archive)
    except OSError as e:
        raise DataError(f"{archive} cannot be read ({e})") from e
    if digest == MD5:
        _remember_verified(archive, cache)
    elif not allow_subset:
        raise DataError(f"{archive} is truncated or corrupt, or not the official release (md5 "
                        f"{digest}, expected {MD5}). Delete it and download or copy it again from "
                        f"{URL}; or, to use its batches as a subset, pass allow_subset=True")


# ----------------------------------------------------------------------------- official release

_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits only the numpy array reconstruction a CIFAR-10 batch needs."""

    def find_class(self, module, name):
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a CIFAR-10 batch file holds only numpy "
                "arrays, lists and bytes, so this file is not one (or has been tampered with)")
        core = "numpy._core" if hasattr(np, "_core") else "numpy.core"
        module = re.sub(r"^numpy\._?core\b", core, module)
        return getattr(importlib.import_module(module), name)


def _read_batch(data, where):
    """Parse one pickled batch (bytes) into HWC images and int64 labels."""
    try:
        batch = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{where}: {e}") from e
    except Exception as e:  # truncated or garbled pickles raise many kinds of error
        raise _corrupt(where, e) from e
    if not isinstance(batch, dict):
        raise DataError(f"{where} is not a CIFAR-10 batch (holds a {type(batch).__name__})")
    try:
        pixels = np.asarray(batch.get(b"data", batch.get("data")))
        labels = np.asarray(batch.get(b"labels", batch.get("labels")), dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where} is not a CIFAR-10 batch ({e})") from e
    if (pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3072
            or labels.shape != pixels.shape[:1] or labels.min(initial=0) < 0
            or labels.max(initial=0) > 9):
        raise DataError(f"{where} is not a CIFAR-10 batch (data {pixels.dtype} "
                        f"{pixels.shape}, {labels.size} labels)")
    return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _join(batches):
    return (np.ascontiguousarray(np.concatenate([b[0] for b in batches])),
            np.concatenate([b[1] for b in batches]))


def _load_official_folder(folder, split, cache):
    paths = [folder / name for name in _BATCHES[split]]
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path} is missing; extract {OFFICIAL_ARCHIVE} again "
                            f"into {folder.parent}")
    key = _key(*(_file_key(p) for p in paths))
    return _cached(cache, key, split,
                   lambda: {split: _join([_read_batch(p.read_bytes(), p) for p in paths])})


def _load_official_tar(archive, split, cache):
    def decode():
        found = {}
        try:
            with tarfile.open(archive, "r|gz") as tar:
                for member in tar:
                    name = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and ".." not in member.name.split("/") and \
                            any(name in names for names in _BATCHES.values()):
                        found[name] = _read_batch(tar.extractfile(member).read(),
                                                  f"{archive}:{member.name}")
        except _ARCHIVE_ERRORS as e:
            raise _corrupt(archive, e) from e
        missing = [n for n in _BATCHES[split] if n not in found]
        if missing:
            raise DataError(f"{archive} lacks {', '.join(missing)}; it is not the official "
                            f"{OFFICIAL_ARCHIVE}, replace it with the file from {URL}")
        return {s: _join([found[n] for n in names]) for s, names in _BATCHES.items()
                if all(n in found for n in names)}
    return _cached(cache, _file_key(archive), split, decode)


# ----------------------------------------------------------------------------- image folders

def _decode_image(data, where):
    """Decode one image file's bytes to a uint8 RGB array [32, 32, 3]."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{where} is not a readable image ({e}); replace or delete it") from e
    if image.size != (32, 32):
        raise DataError(f"{where} is {image.size[0]}x{image.size[1]}; CIFAR-10 images are 32x32")
    return np.asarray(image)


def _decode_split(items, desc):
    """Decode ``(label, name, where, bytes or path)`` items, in label-then-name order."""
    items = sorted(items, key=lambda item: item[:2])
    images = np.empty((len(items), 32, 32, 3), dtype=np.uint8)
    for i, (_, _, where, source) in enumerate(tqdm(items, desc=desc, unit="img", disable=None)):
        images[i] = _decode_image(source if isinstance(source, bytes) else
                                  Path(source).read_bytes(), where)
    return images, np.array([item[0] for item in items], dtype=np.int64)


def _missing_class(items):
    present = {item[0] for item in items}
    return next((cls for label, cls in enumerate(CIFAR10_CLASSES) if label not in present), None)


def _load_image_tar(archive, split, cache):
    def decode():
        # Read all (small, compressed) image files first, then decode: faster than interleaving.
        items = {s: [] for s in SPLITS}
        try:
            with open(archive, "rb") as raw, tqdm.wrapattr(
                    raw, "read", total=archive.stat().st_size, disable=None,
                    desc=f"reading {archive.name}") as progress, \
                    tarfile.open(fileobj=progress, mode="r|gz") as tar:
                for member in tar:
                    parsed = _image_member(member.name) if member.isfile() else None
                    if parsed:
                        items[parsed[0]].append((parsed[1], member.name, f"{archive}:{member.name}",
                                                 tar.extractfile(member).read()))
        except _ARCHIVE_ERRORS as e:
            raise _corrupt(archive, e) from e
        missing = _missing_class(items[split])
        if missing:
            raise DataError(f"{archive} has no images for class {missing!r} (expected members "
                            f"{split}/{missing}/*.jpg or *.png); every CIFAR-10 class is needed")
        # Decode every complete split: the second split then loads from the cache.
        return {s: _decode_split(items[s], f"decoding {archive.name} {s}")
                for s in SPLITS if not _missing_class(items[s])}
    return _cached(cache, _file_key(archive), split, decode)


def _image_folder_items(folder, split):
    """``(items, key)`` of ``folder/split/<class>/``: the images to decode, and the cache key of
    the split's path and each image's class, name, size and modification time."""
    items, entries = [], [os.path.abspath(folder / split)]
    for label, cls in enumerate(CIFAR10_CLASSES):
        class_dir = folder / split / cls
        if not class_dir.is_dir():
            raise DataError(f"class folder {class_dir} is missing; every CIFAR-10 class "
                            f"needs a folder {split}/<class>/ in {folder}")
        for entry in os.scandir(class_dir):
            if (entry.is_file() and not entry.name.startswith(".")
                    and entry.name.lower().endswith(_IMAGE_SUFFIXES)):
                st = entry.stat()
                entries.append(f"{cls}/{entry.name}|{st.st_size}|{st.st_mtime_ns}")
                items.append((label, entry.name, entry.path, entry.path))
        if not items or items[-1][0] != label:
            raise DataError(f"class folder {class_dir} holds no .jpg or .png images")
    return items, _key(*sorted(entries))


def _load_image_folder(folder, split, cache):
    items, key = _image_folder_items(folder, split)
    return _cached(cache, key, split,
                   lambda: {split: _decode_split(items, f"decoding {folder / split}")})


# ----------------------------------------------------------------------------- download

def _download(root, cache):
    """Fetch the official archive into root (or the cache folder), MD5-checked; its path."""
    for folder in (root, cache):
        tmp = folder / f".{OFFICIAL_ARCHIVE}.{os.getpid()}.{os.urandom(4).hex()}.part"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            out = open(tmp, "xb")
            break
        except OSError:
            continue
    else:
        raise DataError(_not_found(root, f"neither {root} nor {cache} is writable for a download"))
    dest, md5 = folder / OFFICIAL_ARCHIVE, hashlib.md5()
    try:
        with out:
            try:
                with urllib.request.urlopen(URL, timeout=60) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(total=total, unit="B", unit_scale=True, disable=None,
                              desc=f"downloading {OFFICIAL_ARCHIVE}") as bar:
                        while chunk := response.read(1 << 20):
                            out.write(chunk)
                            md5.update(chunk)
                            bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as e:  # URLError is an OSError
                reason = getattr(e, "reason", e)
                raise DataError(_not_found(root, f"downloading {URL} failed ({reason})")) from e
        if md5.hexdigest() != MD5:
            raise DataError(f"checksum mismatch for {URL} (md5 {md5.hexdigest()}, expected "
                            f"{MD5}); the download was deleted and {dest} not written. Try "
                            f"again, or place {OFFICIAL_ARCHIVE} in {root} by hand")
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    _remember_verified(dest, cache)
    return dest
