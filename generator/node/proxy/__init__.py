"""A kube-proxy clone: its iptables and nftables modes, their rules and sync model (standard library only)."""
