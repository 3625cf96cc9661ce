"""Clients of the daemon's sockets and dashboard. They never import the core, the stores or the daemon."""
