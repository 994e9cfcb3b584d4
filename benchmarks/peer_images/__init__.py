"""Offline build of the image the benchmark's container peers run in."""
