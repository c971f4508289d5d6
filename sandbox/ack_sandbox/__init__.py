"""Local stand-in of ACK (CS OpenAPI, OSS, Kubernetes API)."""
