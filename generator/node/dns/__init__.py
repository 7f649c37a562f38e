"""The cluster DNS server of a kgen lab (standard library only).

`names` and `message` read and write DNS messages (RFC 1035, EDNS0 of RFC
6891); `records` builds the zone's records from a DnsZone document
(generator.node.dns.zone) by the Kubernetes DNS specification; `answer` turns
one query into one reply; `server` serves UDP and TCP and follows the zone
file; `resolvconf` writes a pod's resolv.conf. Run it with
`python3 -m generator.node.dns --zone FILE [--listen ADDR] [--port 53] [--log FILE]`.
"""
