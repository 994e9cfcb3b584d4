"""Adapters that plug rlmbox into RLM frontends (rlms, DSPy)."""
