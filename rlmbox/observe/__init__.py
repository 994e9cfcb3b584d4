"""Observers of the engine (metrics, traces): views of the audit stream, each optional."""
