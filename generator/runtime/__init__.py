"""Stage 4, the running lab: Docker, the node image, compose, the host-gw host
rule, readiness, status, exec, apply and down.

The only stage that talks to Docker. May import every earlier stage and
`generator.node.contract` (never node internals).
"""
