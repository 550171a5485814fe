"""Durable sagas: definitions, starting, running under leases, compensation, operators."""
