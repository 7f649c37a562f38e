"""`kgen capture`: a pcap of one interface of a node, pod or client (lab contract §6)."""
