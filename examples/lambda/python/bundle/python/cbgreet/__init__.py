"""Stands in for the large packages a real bundle carries (numpy, torch, ...)."""


def greet(name):
    return "hello, %s, from a coldboot bundle" % name
