"""`kgen schema`: the lab file's JSON Schema (draft-07), for editors."""

from __future__ import annotations

from generator.cli.app import app


def schema_text() -> str:
    import json

    from generator.lab.schema import LAB_SCHEMA

    return json.dumps(LAB_SCHEMA, indent=2) + "\n"


@app.command()
def schema() -> None:
    """Print the lab file's JSON Schema (draft-07; yaml-language-server reads it).

    Labs name it in their first line: `# yaml-language-server: $schema=kgen-lab.schema.json`.
    """
    print(schema_text(), end="")
