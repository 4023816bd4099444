"""User-facing entry points: the admin command and the embedded launcher (`make run`).

May import `jobs` and the standard library; starts the service and the worker as
subprocesses, never by importing them (so neither side imports the other).
"""
