"""User-facing entry points: the admin command, the embedded launcher (`make run`), the
Python client (`gradtrace.client`) and the `gradtrace` CLI.

The admin command and the launcher may import `jobs` and the standard library; they start
the service and the worker as subprocesses, never by importing them (so neither side
imports the other). The client and the CLI speak HTTP only: httpx, httpx-sse, typer, rich
and matplotlib, never `jobs`, `service` or `worker`, so they run on any machine.
"""
