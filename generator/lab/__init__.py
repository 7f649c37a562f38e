"""Stage 1, the lab file: its schema, loading and validation (docs/reference.md, "The lab file").

A YAML file becomes a validated `Lab` or a list of errors, one line each.
May import: the standard library, PyYAML and `generator.resources`; nothing of
Docker or of the later stages.
"""
