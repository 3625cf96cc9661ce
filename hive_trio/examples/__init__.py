"""The example agents and `hive-trio up`'s demo. Nothing in the daemon imports them."""
