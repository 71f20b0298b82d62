"""The bottom layer: errors, paths, atomic writes, the stamp format, process locks, and
the labels that are reconciler's state on the engine.

Imports nothing else of reconciler; everything else may import it.
"""
