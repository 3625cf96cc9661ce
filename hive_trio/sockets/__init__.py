"""Thin trio adapters at the edge: the agent and manager MCP sockets and host.sock."""
