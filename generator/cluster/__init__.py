"""Stage 2, the desired cluster: every address and name a lab needs.

Node IPs, pod subnets, VTEPs, cluster IPs and nodePorts, computed from a
validated `Lab` and the node network the runtime chose. Pure: may import
`generator.lab` and the standard library only.
"""
