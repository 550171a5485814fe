"""Distributed tracing: spans, their recording, OTLP in and out."""
