"""ClusterFuzzLite/OSS-Fuzz entry point (``*_fuzzer.py``, built by
``compile_python_fuzzer``): the same harness as ``python -m vmxfuzz.fuzz``."""

import sys

import atheris

from vmxfuzz.fuzz.harness import TestOneInput, with_defaults

if __name__ == "__main__":
    atheris.Setup(with_defaults(sys.argv), TestOneInput)
    atheris.Fuzz()
