"""NetworkPolicy on the host: the evaluator `kgen check` and the tests derive expected
reachability from (Kubernetes' semantics, independent of the node's rules)."""
