#!/usr/bin/env bash
# Regenerates the committed seed corpora fuzz/corpus/<target>/ with the project's own
# writers (fuzz/make_corpus.cc). Deterministic; run it when a format changes, then
# commit the result. Files it does not write (hand-made seeds) are left alone.
#   fuzz/make_corpus.sh [BUILD_DIR]      # default: build
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
cmake --build "$BUILD_DIR" --target flexgs_fuzz_make_corpus
"$BUILD_DIR/fuzz/flexgs_fuzz_make_corpus" fuzz/corpus
du -sh fuzz/corpus
