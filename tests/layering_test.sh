#!/usr/bin/env bash
# Checks the layering rules of core/README.md on the include graph of the whole tree:
# which core/ layer may include which, that internal/ headers stay in their layer,
# that no one includes "core/..." paths (which would bypass the per-layer include
# roots), that core/ includes no gRPC, CUDA or front-end header, and that front ends
# only include the front ends they may. Prints every forbidden include and exits 1.
#
#   tests/layering_test.sh              check this checkout
#   tests/layering_test.sh --self-test  also prove that a forbidden include fails it
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

check() {  # check DIR: 0 when DIR's include graph obeys the rules
  python3 - "$1" <<'PY'
import os, re, sys
root = sys.argv[1]
# A core layer may include itself and the layers listed (core/README.md).
CORE = {
    "base": [],
    "scene": ["base"],
    "io": ["base", "scene"],
    "render": ["base", "scene"],
    "elastic": ["base", "scene", "io", "render"],
    "train": ["base", "scene", "io", "render", "elastic"],
    "stream": ["base", "scene", "io", "render", "elastic"],
    "eval": ["base", "scene", "io", "render", "elastic", "stream"],
}
LOW = ["base", "scene", "io", "render", "elastic"]
# Front ends (and kernels): the core layers and project folders each may include.
OTHER = {
    "kernels": (LOW + ["stream"], ["kernels"]),
    "server": (list(CORE), ["server", "kernels"]),
    "client": (list(CORE), ["client", "kernels"]),
    "loadgen": (list(CORE), ["loadgen", "client"]),
    "viewer": (list(CORE), ["viewer", "client", "kernels"]),
    "tools": (list(CORE), ["tools", "kernels"]),
    "bench": (list(CORE), ["bench", "kernels"]),
    "fuzz": (list(CORE), ["fuzz"]),
    "tests": (list(CORE), ["tests", "kernels", "server", "client", "loadgen", "tools", "viewer"]),
}
FOLDERS = set(OTHER) | {"core", "proto"}
inc = re.compile(r'^\s*#\s*include\s*[<"]([^">]+)[">]')
errors = []
for dirpath, dirnames, filenames in os.walk(root):
    rel_dir = os.path.relpath(dirpath, root)
    top = rel_dir.split(os.sep)[0]
    if rel_dir == "." :
        dirnames[:] = [d for d in dirnames if d in FOLDERS]
        continue
    for name in filenames:
        if not name.endswith((".h", ".cc", ".cu", ".cuh")):
            continue
        path = os.path.join(rel_dir, name)
        parts = path.split(os.sep)
        layer = parts[1] if top == "core" and len(parts) > 2 else None
        with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                m = inc.match(line)
                if not m:
                    continue
                target = m.group(1)
                head = target.split("/")[0]
                where = f"{path}:{lineno}: {target}"
                if head == "core":
                    errors.append(f"{where}: include core headers as \"<layer>/<name>.h\", not through core/")
                    continue
                if "/internal/" in target and (head != layer):
                    errors.append(f"{where}: an internal header of core/{head}/ is only for core/{head}/")
                    continue
                if top == "core":
                    if layer is None:
                        errors.append(f"{where}: core/ sources live in a layer folder")
                    elif head in CORE and head != layer and head not in CORE[layer]:
                        errors.append(f"{where}: core/{layer}/ may not include core/{head}/ "
                                      f"(allowed: {', '.join(CORE[layer]) or 'nothing'})")
                    elif head in FOLDERS or head in ("grpc", "grpcpp", "google") or target.startswith("cuda"):
                        errors.append(f"{where}: core/ includes no front end, gRPC, protobuf or CUDA header")
                elif top in OTHER:
                    layers, folders = OTHER[top]
                    if head in CORE and head not in layers:
                        errors.append(f"{where}: {top}/ may not include core/{head}/")
                    elif head in FOLDERS and head != "proto" and head not in folders:
                        errors.append(f"{where}: {top}/ may not include {head}/")
for e in sorted(errors):
    print(e)
print(f"layering: {len(errors)} forbidden include(s)" if errors else "layering: ok")
sys.exit(1 if errors else 0)
PY
}

check "$ROOT"
if [ "${1:-}" = "--self-test" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # A copy of the tree's sources with one forbidden include each way must fail.
  for bad in 'core/base/bad.h|#include "scene/camera.h"' 'core/stream/bad.h|#include "train/adam.h"' \
             'server/bad.h|#include "client/scene_client.h"' 'tools/bad.h|#include "render/internal/tile_blend.h"' \
             'client/bad.h|#include "core/scene/camera.h"' 'core/render/bad.h|#include <grpcpp/grpcpp.h>'; do
    rm -rf "$tmp/tree"; mkdir -p "$tmp/tree"
    (cd "$ROOT" && git ls-files -co --exclude-standard -- core kernels server client tools | \
       grep -E '\.(h|cc|cu|cuh)$' | xargs -I{} cp --parents {} "$tmp/tree/")
    file="${bad%%|*}"; line="${bad#*|}"
    mkdir -p "$tmp/tree/$(dirname "$file")"; echo "$line" > "$tmp/tree/$file"
    if check "$tmp/tree" > "$tmp/out"; then
      echo "layering self-test: '$line' in $file was not caught" >&2; exit 1
    fi
    grep -q "$file" "$tmp/out" || { echo "layering self-test: wrong report for $file" >&2; cat "$tmp/out"; exit 1; }
  done
  echo "layering self-test: 6 forbidden includes caught"
fi
