"""Running hive-trio as a system service: systemd readiness and watchdog, journald-friendly logs, the unit file.

Nothing here knows the hive's parts; `daemon.serve_daemon` calls in once every socket is bound.
"""
