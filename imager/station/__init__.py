"""Lifecycle state machine, job control (and later the agents' API)."""
