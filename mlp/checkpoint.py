"""Pack arrays plus JSON metadata into npz bytes, and back, never using pickle."""
import io
import json

import numpy as np

META_KEY = "__meta__"


def pack(arrays, meta):
    """Return npz bytes holding ``arrays`` (name -> ndarray) and ``meta`` as JSON in a uint8 array."""
    buf = io.BytesIO()
    blob = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    np.savez(buf, **{META_KEY: blob}, **arrays)
    return buf.getvalue()


def unpack(data):
    """Return ``(arrays, meta)`` from bytes written by ``pack``; object arrays are refused."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays.pop(META_KEY).tobytes().decode("utf-8"))
    return arrays, meta
