"""NetworkPolicy on a node (standard library only).

`policy` turns validated NetworkPolicy objects (networking.k8s.io/v1) into a
normalised form with the API server's defaults applied and answers the
questions both the host's evaluator and the rule generators ask (does this
selector match, which pods does this peer name, what does this named port
resolve to on that pod). `iptables` and `nftables` write the enforcement
rules for one node's own pods.
"""
