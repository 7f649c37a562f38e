"""`kgen check`: connectivity and NAT checks derived from the lab, run as testinfra tests."""
