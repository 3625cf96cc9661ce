"""Pure rules: names, paths, configuration and line framing. No sockets, no tasks, no database."""
