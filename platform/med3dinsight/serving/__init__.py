"""Serving the exported encoder over HTTP on Ray Serve (request preprocessing, runner, app, client)."""
