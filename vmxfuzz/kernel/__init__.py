"""Kernel code the seed series did not change, shared by every variant.

Each function is a generator that mirrors the kernel function of the same name:
one ``yield "function:point"`` before every step another CPU or an NMI could observe
(spec section 1), calls as ``yield from k.f.name(k, ...)`` so a variant can replace
any function, exactly as the kernel dispatches vendor code through ops tables.
"""
