"""SHA-256 digests: of JSON, of a file, of an array."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def sha256_json(obj: Any) -> str:
    """SHA-256 (hex) of ``obj`` as compact JSON with sorted keys (cache keys; non-JSON values as ``str``)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()



def array_digest(a: Any) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    import numpy as np

    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}|{a.shape}|".encode() + a.tobytes()).hexdigest()
