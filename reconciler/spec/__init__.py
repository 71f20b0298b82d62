"""The manifest: pydantic models, YAML with positions, loading a package, discovery.

What the user wrote, checked, with every problem pointing at a file, line and field.
Imports only `core`.
"""
