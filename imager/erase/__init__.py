"""Erasure: plans, engines, verification and the safety guard."""
