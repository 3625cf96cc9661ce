"""host.sock: hyperhive's v1 admin wire (JSON lines tagged `cmd`)."""
