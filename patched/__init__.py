"""Linux 5.6 + the seed series: the functions the series changes, as it leaves them.

Installed as ``vmxfuzz.patched``.  Everything else comes from ``vmxfuzz.kernel``.
"""
