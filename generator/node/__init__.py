"""Code that runs inside a kgen node container.

Standard library only: the node image carries Debian's python3 and nothing
from PyPI. The host side may import from here; never the other way round.
"""
