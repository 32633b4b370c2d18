"""The floor of the benchmark: a static-file server serving bytes the exporter served.

It is Python's own `http.server.ThreadingHTTPServer` with `SimpleHTTPRequestHandler` serving a
directory, nothing more: no rendering, no compressing, no locking, just a file read and sent
(one thread per connection, HTTP/1.0 as the stdlib serves it). The benchmark writes two files
there: `metrics.txt`, a body the exporter returned for a plain scrape, and `metrics.txt.gz`, a
body it returned for a scrape with `Accept-Encoding: gzip`. As nginx's `gzip_static` does, a
request for `metrics.txt` from a client that accepts gzip gets the `.gz` file, sent as is with
`Content-Encoding: gzip`. The time a scrape of this server takes is the cost of HTTP in Python
for those bytes; an exporter cannot serve the same bytes much faster than that.

    python -m bench.staticserve --directory DIR [--port 0]

It prints `serving DIR on http://HOST:PORT` once it listens.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsFileHandler(SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler that sends `X.gz` for `X` when the client accepts gzip."""

    _gzip = False

    def translate_path(self, path: str) -> str:
        local = super().translate_path(path)
        accepts_gzip = "gzip" in self.headers.get("Accept-Encoding", "")
        self._gzip = accepts_gzip and os.path.isfile(local + ".gz")
        return local + ".gz" if self._gzip else local

    def guess_type(self, path: Any) -> str:
        return CONTENT_TYPE

    def end_headers(self) -> None:
        if self._gzip:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Vary", "Accept-Encoding")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line on stderr per request would cost more than the request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--directory", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args(argv)
    handler = functools.partial(MetricsFileHandler, directory=args.directory)
    server = ThreadingHTTPServer((args.host, args.port), handler)
    server.daemon_threads = True
    print(f"serving {args.directory} on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
