"""The agent and manager sockets: MCP over line-framed unix sockets, through the official SDK."""
