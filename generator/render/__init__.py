"""Stage 3, rendering: the compose file, the containerlab topology and the
per-node files, from the desired cluster.

Pure: same cluster in, same bytes out; no Docker, no network. May import
`generator.lab`, `generator.cluster`, `generator.resources` and Jinja2.
"""
