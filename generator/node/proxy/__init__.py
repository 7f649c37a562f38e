"""A kube-proxy clone: the iptables proxier's rules and sync model (standard library only)."""
