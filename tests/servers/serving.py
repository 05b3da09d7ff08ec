"""The life of a test server, shared by static_server.py and fault_server.py.

run(server, max_seconds) prints the bound port on stdout (the first line the
test harness reads), serves until SIGTERM, SIGINT or max_seconds, then closes
the listening socket. Everything is bounded: no server outlives its timer.
"""
import signal
import sys
import threading


def run(server, max_seconds):
    def stop(*_):
        # shutdown() waits for serve_forever, so it must run on another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    timer = threading.Timer(max_seconds, stop)
    timer.daemon = True
    timer.start()

    sys.stdout.write("%d\n" % server.server_address[1])
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        timer.cancel()
        server.server_close()
