#!/usr/bin/env python3
"""A Python handler wrapped by coldboot: imports cbdemo from the bundle's python/ folder.

    coldboot --url URL --checksum SUM -- python3 examples/handler.py [NAME]
"""
import os
import sys

# A published bundle is immutable: do not write __pycache__ into it.
sys.dont_write_bytecode = True

import cbdemo  # found through PYTHONPATH, which coldboot prefixes with <bundle>/python


def main(argv):
    name = argv[1] if len(argv) > 1 else "world"
    print("handler.py: COLDBOOT_BUNDLE=%s" % os.environ.get("COLDBOOT_BUNDLE", "<unset>"))
    print("handler.py: cbdemo from %s" % os.path.dirname(cbdemo.__file__))
    print("handler.py: %s" % cbdemo.greet(name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
