"""Stand-in for the ACK "CS" OpenAPI (version 2015-12-15, ROA style): node pools, cluster, tasks, kubeconfig."""
