"""The worker: runs inside the sandbox, in the client's interpreter (see plugin.py)."""
