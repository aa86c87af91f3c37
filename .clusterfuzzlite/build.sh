#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build for Python projects: install the package, then
# package each *_fuzzer.py with compile_python_fuzzer (PyInstaller + atheris).
pip3 install .
for fuzzer in $(find "$SRC/vmxfuzz/fuzz" -name '*_fuzzer.py'); do
  compile_python_fuzzer "$fuzzer"
done
# Seed corpus: ClusterFuzzLite picks up <fuzzer>_seed_corpus.zip next to the binary.
(cd "$SRC/vmxfuzz/corpora/seed" && zip -q -r "$OUT/scenario_fuzzer_seed_corpus.zip" .)
