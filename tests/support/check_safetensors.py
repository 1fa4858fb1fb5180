#!/usr/bin/env python3
"""Checks a flexgs elastic.safetensors file from Python.

Usage: check_safetensors.py FILE EXPECTED_JSON

EXPECTED_JSON maps each tensor name to {"shape": [...], "sum": float, "head": [first
values]}. The file is loaded with the reference `safetensors` package
(safetensors.numpy.load_file) when it is installed; otherwise with an independent
reader written from the format specification (numpy only), so the layout is still
checked by code that shares nothing with the C++ implementation. Prints which
loader ran and "OK: <n> tensors" on success; exits non-zero on any mismatch.
"""
import json
import struct
import sys

import numpy as np


def load_with_spec_reader(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    tensors = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            assert all(isinstance(v, str) for v in info.values()), "metadata values must be strings"
            continue
        assert info["dtype"] == "F32", f"{name}: dtype {info['dtype']}"
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        assert end - begin == 4 * int(np.prod(shape, dtype=np.int64)), f"{name}: size mismatch"
        tensors[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(shape)
        spans.append((begin, end))
    spans.sort()
    pos = 0
    for begin, end in spans:
        assert begin == pos, "tensors do not tile the data section"
        pos = end
    assert pos == len(data), "trailing bytes"
    assert (8 + n) % 8 == 0, "data section not 8-byte aligned"
    return tensors


def main():
    path, expected_path = sys.argv[1], sys.argv[2]
    try:
        from safetensors.numpy import load_file
        tensors = load_file(path)
        print("loader: safetensors package (safetensors.numpy.load_file)")
    except ImportError:
        tensors = load_with_spec_reader(path)
        print("loader: specification reader (the safetensors package is not installed)")

    with open(expected_path) as f:
        expected = json.load(f)
    errors = []
    if sorted(tensors) != sorted(expected):
        errors.append(f"names differ: {sorted(set(tensors) ^ set(expected))}")
    for name, exp in expected.items():
        if name not in tensors:
            continue
        t = tensors[name]
        if t.dtype != np.float32:
            errors.append(f"{name}: dtype {t.dtype}")
        if list(t.shape) != exp["shape"]:
            errors.append(f"{name}: shape {list(t.shape)}, expected {exp['shape']}")
            continue
        flat = t.reshape(-1)
        head = [float(v) for v in flat[:len(exp["head"])]]
        if head != exp["head"]:
            errors.append(f"{name}: first values {head}, expected {exp['head']}")
        total = float(np.sum(flat, dtype=np.float64))
        tolerance = 1e-9 * (1.0 + float(np.sum(np.abs(flat), dtype=np.float64)))
        if abs(total - exp["sum"]) > tolerance:
            errors.append(f"{name}: sum {total}, expected {exp['sum']}")
    for e in errors:
        print("MISMATCH:", e)
    if errors:
        return 1
    print(f"OK: {len(tensors)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
