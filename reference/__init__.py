"""Linux 5.6: the functions the seed series changes, as they were before it.

Installed as ``vmxfuzz.reference``.  Everything else comes from ``vmxfuzz.kernel``.
"""
