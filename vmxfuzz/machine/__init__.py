"""The simulated machine: CPUs, VMX instructions, memory, fault outcomes."""
