"""vmxfuzz: property-based fuzzing and differential testing of KVM VMX models.

``vmxfuzz.reference`` (Linux 5.6) and ``vmxfuzz.patched`` (5.6 + the seed series)
hold only the functions the seed changes; ``vmxfuzz.kernel`` holds the code it did
not change; ``vmxfuzz.machine`` is the simulated hardware.
"""

__version__ = "0.1.0"
