"""CNI 1.0.0 plugins (`bridge`, `host-local`, `loopback`) and a small runtime for the agent."""
