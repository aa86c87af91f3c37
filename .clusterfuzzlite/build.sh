#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build (tests/test_cflite.py runs this script with the
# builder's commands emulated): install the package, then bundle each *_fuzzer.py with
# compile_python_fuzzer (PyInstaller --onefile + atheris).
pip3 install .
# Bundle from a folder of its own: from the checkout, the source folder vmxfuzz/ would
# shadow the installed package (which maps fuzz/, reference/ and patched/ under it),
# and compile_python_fuzzer rewrites the fuzzer file in coverage builds, so it gets a
# copy. The models and plug-in machinery are imported lazily (importlib): collect every
# submodule, and the package data (scenario schemas, fuzz/known-findings.json); the
# package's sources go in too, because the step labels are read from them
# (vmxfuzz/labels.py, inspect.getsource).
bundle_dir=$(mktemp -d)
pkg_dir=$(cd "$bundle_dir" && python3 -c 'import os, vmxfuzz; print(os.path.dirname(vmxfuzz.__file__))')
for fuzzer in $(find "$SRC/vmxfuzz/fuzz" -name '*_fuzzer.py'); do
  cp "$fuzzer" "$bundle_dir/"
  (cd "$bundle_dir" && compile_python_fuzzer "$(basename "$fuzzer")" \
    --collect-submodules vmxfuzz --collect-data vmxfuzz --add-data "$pkg_dir:vmxfuzz")
done
# Seed corpus: ClusterFuzzLite picks up <fuzzer>_seed_corpus.zip next to the binary.
(cd "$SRC/vmxfuzz/corpora/seed" && python3 -m zipfile -c "$OUT/scenario_fuzzer_seed_corpus.zip" ./*)
