"""kgen: Kubernetes networking labs in Docker.

This top-level package stays import-free so that the node-side subpackage
(`generator.node`, standard library only) can be copied into the node image
on its own.
"""
