"""HEALTHCHECK probe: exit 0 when the server in this container is ready, 1 otherwise."""

import http.client
import os
import sys


def main() -> int:
    port = int(os.environ.get("PORT", "5001"))
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/ready")
        return 0 if connection.getresponse().status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
