"""The scoring runtime that every image runs: an Azure ML compatible inference server.

It is copied into images as the package `reconciler_runtime` and runs in the
image's virtual environment, so it imports nothing else of reconciler: only the
standard library, uvicorn (with httptools and uvloop), and inference-schema when
the entry script uses it. All imports inside it are relative.
"""
