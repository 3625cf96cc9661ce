"""Durable stores on APSW: plain SQL functions on a connection, and thin async classes. Never imports trio's
task machinery, the event hub or a socket module."""
