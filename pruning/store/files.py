"""Reading and writing a run store's files: JSON and tensors, atomically written, checked when read."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import torch

from ..core.atomic import replacing, write_bytes
from ..core.errors import StoreError


def save_json(obj, path: Path) -> None:
    write_bytes((json.dumps(obj, indent=1, sort_keys=True) + "\n").encode(), path)


def compact(obj):
    """``obj`` with every tensor that is a view into a larger storage replaced by a copy of its own elements.

    torch.save writes a tensor's whole storage: a member of a population trainer's stacked weights would
    otherwise carry every member's (seen: 7.4 MB per LeNet training record instead of 0.7 MB)."""
    if torch.is_tensor(obj):
        own = obj.numel() * obj.element_size()
        return obj.clone() if obj.untyped_storage().nbytes() != own or not obj.is_contiguous() else obj
    if isinstance(obj, dict):
        return {k: compact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(compact(v) for v in obj)
    return obj


# Every tensor file ends with this mark and the sha256 of the bytes before it, so that a file checks itself
# when it is read (a checkpoint has no other record of its checksum). Files written before the mark existed
# end as torch.save ends them, with a zip directory's end record; those are read unchecked.
TRAILER = b"\x00pruning-sha256\x00"
_ZIP_END = b"PK\x05\x06"


def save_tensors(obj, path: Path) -> str:
    """torch.save ``obj`` atomically, each tensor with only its own elements (``compact``), followed by
    ``TRAILER`` and the sha256 of what torch wrote; returns the sha256 of all the bytes written."""
    buf = io.BytesIO()
    torch.save(compact(obj), buf)
    data = buf.getvalue()
    data += TRAILER + hashlib.sha256(data).digest()
    write_bytes(data, path)
    return hashlib.sha256(data).hexdigest()


def _payload(data: bytes) -> bytes | None:
    """What torch.save wrote, if ``data`` is intact: its checksum trailer verified, or a file written before
    trailers whose zip end record is where torch puts it; None for a damaged file."""
    n = len(TRAILER) + 32
    if len(data) > n and data[-n:-32] == TRAILER:
        payload = data[:-n]
        return payload if hashlib.sha256(payload).digest() == data[-32:] else None
    if len(data) >= 22 and data[-22:-18] == _ZIP_END:
        return data
    return None


def read_json(path: Path, what_to_do: str):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"{path} is missing; {what_to_do}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StoreError(f"{path} is damaged (not valid JSON); {what_to_do}") from None


def verify_sha256(path: Path, sha256: str | None, what_to_do: str) -> None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path} is missing; {what_to_do}") from None
    if sha256 is None or hashlib.sha256(data).hexdigest() != sha256:
        raise StoreError(f"{path} is damaged (checksum mismatch); {what_to_do}")


def read_tensors(path: Path, what_to_do: str, sha256: str | None = None):
    """A tensor file's contents, read only once its bytes are verified: against ``sha256`` where the caller has
    it, and always against the file's own trailer (``save_tensors``)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path} is missing; {what_to_do}") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise StoreError(f"{path} is damaged (checksum mismatch); {what_to_do}")
    payload = _payload(data)
    if payload is None:
        raise StoreError(f"{path} is damaged (checksum mismatch); {what_to_do}")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise StoreError(f"{path} is damaged (cannot be read); {what_to_do}") from None


def link(src: Path, dst: Path) -> None:
    """Atomically place ``src``'s bytes at ``dst``: a hard link where possible, else a copy."""
    with replacing(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
