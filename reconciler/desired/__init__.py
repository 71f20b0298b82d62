"""Desired state: from a package's files to its content hashes, and the renderers.

Digests and the stat cache, the input files, pinned dependencies (package.lock) and
the wheel cache, the Dockerfile and the build folder. Computed from files only: never
asks the Docker engine (a base image's ID is passed in). Imports `spec` and `core`.
"""
