"""A tiny package shipped in the bundle's python/ folder (on PYTHONPATH)."""


def greet(name):
    return "cbdemo greets %s" % name
