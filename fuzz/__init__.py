"""libFuzzer/atheris front end: a total byte decoder and the ``TestOneInput`` harness.

Installed as ``vmxfuzz.fuzz``.  ``python -m vmxfuzz.fuzz [libFuzzer flags] [corpus
dirs]`` runs the harness with libFuzzer's own command line (``-max_total_time``,
``-runs``, ``-jobs``, ``-workers``, ``-fork``, ``-merge=1``, ``-dict``, ...).
"""
