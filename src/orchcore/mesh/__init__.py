"""Mesh policies: traffic, security, resilience and observability rules for calls."""
