"""`reconciler watch`: decides *when* to run the apply pipeline, never *what* to do.

File events -> batches -> a change set per package (reload, rebuild, rescan) -> the
pipeline in `reconciler.pipeline`. Imports `loop` and below.
"""
