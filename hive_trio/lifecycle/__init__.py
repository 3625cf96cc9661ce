"""Where agents run: supervision, operator actions, approvals with git, and the backends."""
