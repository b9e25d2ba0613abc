"""The testbed: real Ganeti clusters on one machine, each node in its own namespaces.

``python -m tests.testbed up`` / ``down`` / ``status`` / ``exec``; pytest fixtures in
tests/conftest.py.  See plan.py for the address plan.
"""
