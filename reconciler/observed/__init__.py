"""Observed state: what actually exists, read once per run.

Folder stamps and drift, images and containers by their labels, registry tags: the
state types the planner reads. Imports `engine`, `desired`, `spec`, `core`.
"""
