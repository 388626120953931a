"""Shared code for app1 and app2, found through PYTHONPATH as set by environment=."""


def greet(app, path):
    return f"hello from {app} at {path}\n"
