"""The bottom layer: errors, paths, atomic writes, the stamp format, process locks.

Imports nothing else of reconciler; everything else may import it.
"""
