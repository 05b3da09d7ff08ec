"""A Python Lambda handler whose dependencies come from the coldboot bundle.

The managed python3.12 runtime starts through AWS_LAMBDA_EXEC_WRAPPER=/opt/bin/coldboot, which
puts the bundle's python/ folder on PYTHONPATH before the runtime imports this file.
"""
import os

import cbgreet  # from the bundle: bundle/python/cbgreet/


def main(event, context):
    name = (event or {}).get("name", "world")
    return {
        "greeting": cbgreet.greet(name),
        "bundle": os.environ.get("COLDBOOT_BUNDLE"),
        "request_id": getattr(context, "aws_request_id", None),
    }
