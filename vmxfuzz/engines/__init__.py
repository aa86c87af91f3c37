"""Engines choose scenarios; the executor, oracle and differential runner judge them.

Every engine (Hypothesis, the libFuzzer decoder, exhaustive exploration) produces
:class:`vmxfuzz.scenario.Scenario` objects and hands them to :mod:`vmxfuzz.campaign`.
"""
