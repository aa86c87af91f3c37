"""``python -m vmxfuzz.fuzz [libFuzzer flags] [corpus dirs]``: libFuzzer's command line,
unchanged (``-max_total_time``, ``-runs``, ``-jobs``, ``-workers``, ``-fork``,
``-merge=1``, ``-dict``, ...).  See :mod:`vmxfuzz.fuzz.harness` for the options read
from the environment."""

from vmxfuzz.fuzz.harness import main

main()
