"""Stage 1, the lab file: its schema, loading and validation (lab contract §1).

A YAML file becomes a validated `Lab` or a list of errors, one line each.
May import: the standard library, PyYAML and `generator.resources`; nothing of
Docker or of the later stages.
"""
