"""The manifest: pydantic models, YAML with positions, loading a package, discovery, and
the output modes as one table of capabilities (`modes`).

What the user wrote, checked, with every problem pointing at a file, line and field.
Imports only `core`.
"""
