"""`kgen capture`: a pcap of one interface of a node, pod or client (docs/reference.md, `kgen capture`)."""
