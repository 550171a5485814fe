"""Clients of the daemon's HTTP API: how a face outside the daemon finds it and talks to it."""
