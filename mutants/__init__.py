"""The mutant catalogue: small semantic mutants of ``patched``, one per module.

Each module is an ordinary variant plug-in (``BASE = "patched"``) that overrides one
kernel function with one deliberate mistake, and keeps everything else of the function
as it is in the model (statement order, step labels).  A module states in its docstring
what changed, why a developer could plausibly write it, and which invariant should
catch it, or why it cannot be observed (an *equivalent* mutant).  ``MUTANT`` is the
plain-data summary the runner (:mod:`vmxfuzz.mutation`) and the docs read:

* ``id``: ``M01`` ...; ``summary``: one line;
* ``function``: the kernel function the mutant overrides;
* ``expect``: the invariant(s) expected to kill it, ``behaviour``, or ``None``;
* ``equivalent``: ``False``, or a short reason why no scenario of the default
  (sequentially consistent) mode can tell it from ``patched``.

Conventions that keep kills honest:

* A deleted one-step action (a store, a VMX instruction, an IRQ-flag change) keeps its
  step as a labelled no-op, so the mutant's steps line up with ``patched``'s: the same
  schedule then means the same interleaving in both, and a kill is the semantic change,
  not a shifted schedule.  Deleted calls of multi-step flows (an IPI, a list walk) go
  with their steps.
* A reordered store keeps its own label, so "an NMI before ``list_add:publish``" still
  means "before the publishing store", wherever that store now is.

Use a mutant anywhere a variant is accepted, by module or by file:

    vmxfuzz replay mutants/kills/M03-*.json --variant patched,vmxfuzz.mutants.m03_drop_vmclear
    vmxfuzz fuzz --variant patched,mutants/m03_drop_vmclear.py --time 30

and the whole catalogue with ``vmxfuzz mutants`` (see ``docs/mutants.md``).
"""
