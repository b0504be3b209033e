"""The editor's HTTP layer and start-up: a ThreadingHTTPServer serving the page and the JSON/PNG API
(the routes are listed in `serve.service`).

Bound to loopback, only loopback Host headers are answered (a DNS-rebinding page cannot reach
the API); another address serves anyone who can reach it, with a warning (no authentication).
"""

import copy
import http.server
import importlib.resources
import ipaddress
import json
import logging
import socket
import time
import urllib.parse
from typing import Dict, Optional, Tuple

from pix2pixhd_jax.data.readers import read_source
from pix2pixhd_jax.errors import ApiError, DataError, UserError
from pix2pixhd_jax.inference.synthesis import Synthesizer
from pix2pixhd_jax.serve.service import EditorService, Limits

PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
              "/editor.js": ("editor.js", "text/javascript; charset=utf-8"),
              "/editor.css": ("editor.css", "text/css; charset=utf-8")}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_page() -> Dict[str, Tuple[bytes, str]]:
    """The page's files, read once from the package (no request path ever reaches the disk)."""
    root = importlib.resources.files("pix2pixhd_jax.serve") / "page"
    return {route: (root.joinpath(name).read_bytes(), ctype) for route, (name, ctype) in PAGE_FILES.items()}


POST_ROUTES = {"open": "open_scene", "upload": "upload", "paint": "paint", "fill": "fill", "select": "select",
               "delete": "delete", "relabel": "relabel", "style": "style", "undo": "undo", "close": "close"}


class EditorHandler(http.server.BaseHTTPRequestHandler):
    service: EditorService = None
    page: Dict[str, Tuple[bytes, str]] = {}
    allow_any_host = False
    server_version = "pix2pixhd-jax-editor"
    timeout = 60  # seconds; make_server sets Limits.request_timeout_s

    def log_message(self, fmt, *args):
        logging.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: bytes, ctype: str, extra: Optional[dict] = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict):
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _error(self, status: int, message: str):
        extra = {"Allow": "GET, HEAD, POST"} if status == 405 else None
        self._send(status, json.dumps({"error": message}).encode(), "application/json", extra)

    def _host_ok(self) -> bool:
        """Bound to loopback, only loopback Host headers (a DNS-rebinding page cannot reach the API)."""
        if self.allow_any_host:
            return True
        host = (self.headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return is_loopback(name)

    def _dispatch(self, fn):
        try:
            if not self._host_ok():
                raise ApiError(403, f"Host {self.headers.get('Host')!r} is not this loopback server's; open the "
                                    "editor at http://127.0.0.1:PORT/.")
            fn()
        except ApiError as e:
            if e.status in (408, 413):
                self.close_connection = True  # the rest of the body is not read
            self._error(e.status, str(e))
        except UserError as e:
            self._error(400, str(e))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # a bug: log it, tell the client without internals
            logging.exception("editor request %s %s failed", self.command, self.path)
            self._error(500, "internal error (see the server's log); the edit was not applied.")

    def do_GET(self):
        self._dispatch(self._get)

    def do_HEAD(self):
        self._dispatch(self._get)

    def do_POST(self):
        self._dispatch(self._post)

    def _not_allowed(self):
        raise ApiError(405, f"{self.command} is not an operation of the editor: GET (and HEAD) the page, "
                            f"/api/info and /api/download/...; POST to {', '.join('/api/' + r for r in POST_ROUTES)}.")

    def do_PUT(self):
        self._dispatch(self._not_allowed)

    def do_DELETE(self):
        self._dispatch(self._not_allowed)

    def do_PATCH(self):
        self._dispatch(self._not_allowed)

    def do_OPTIONS(self):
        self._dispatch(self._not_allowed)

    def _get(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path in self.page:
            body, ctype = self.page[url.path]
            csp = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
                   "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
            return self._send(200, body, ctype, {"Content-Security-Policy": csp})
        if url.path == "/favicon.ico":
            return self._send(204, b"", "image/x-icon")
        if url.path == "/api/info":
            return self._json(200, self.service.info)
        prefix = "/api/download/"
        if url.path.startswith(prefix) and url.path.endswith(".png"):
            query = urllib.parse.parse_qs(url.query)
            sid = query.get("session", [None])[0]
            if sid is None:
                raise ApiError(400, "query parameter 'session' is missing: /api/download/photo.png?session=ID.")
            body, filename = self.service.download(sid, url.path[len(prefix):-len(".png")])
            return self._send(200, body, "image/png", {"Content-Disposition": f'attachment; filename="{filename}"'})
        raise ApiError(404, f"no page or API at {url.path[:80]!r}; the editor is at / and its API under /api/.")

    def _post(self):
        url = urllib.parse.urlsplit(self.path)
        op = url.path[len("/api/"):] if url.path.startswith("/api/") else None
        if op not in POST_ROUTES:
            raise ApiError(404, f"no API at {url.path[:80]!r}; POST one of "
                                f"{', '.join('/api/' + r for r in POST_ROUTES)}.")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, f"Content-Type {ctype or 'missing'!r}; send the request as application/json.")
        length = self.headers.get("Content-Length")
        if length is None:
            raise ApiError(411, "Content-Length is missing; send the JSON body with its length.")
        if not length.strip().isdigit():
            self.close_connection = True
            raise ApiError(400, f"Content-Length {length[:40]!r} is not a byte count (a whole number >= 0); send "
                                "the JSON body's length in bytes.")
        length = int(length)
        cap = self.service.limits.max_body_bytes
        if length > cap:
            raise ApiError(413, f"the request body is {length / 2 ** 20:.1f} MiB, over the {cap / 2 ** 20:.0f} MiB "
                                "cap; upload smaller PNGs.")
        raw = self._read_body(length)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the request body is not valid JSON ({e}); send an object such as "
                                '{"session": "...", "x": 10, "y": 20}.') from None
        if not isinstance(body, dict):
            raise ApiError(400, f"the request body is a JSON {type(body).__name__}; send a JSON object.")
        self._json(200, getattr(self.service, POST_ROUTES[op])(body))


    def _read_body(self, length: int) -> bytes:
        """The body's `length` bytes; a client that stops sending gets 408 after `timeout` s."""
        chunks, got = [], 0
        try:
            while got < length:
                chunk = self.rfile.read1(min(length - got, 1 << 20))
                if not chunk:
                    raise ApiError(400, f"the request body ended after {got} of its {length} bytes "
                                        "(Content-Length); send the whole body.")
                chunks.append(chunk)
                got += len(chunk)
        except (TimeoutError, socket.timeout):
            raise ApiError(408, f"the request body stalled: {got} of its {length} bytes arrived in {self.timeout} s; "
                                "send the whole body without pausing.") from None
        return b"".join(chunks)


def bind(host: str = "127.0.0.1", port: int = 8000, limits: Optional[Limits] = None):
    """A ThreadingHTTPServer listening on host:port (port 0: a free port) whose handler has no
    service yet (`attach` gives it one): a taken or impossible address is an error before any
    model is loaded or compiled."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UserError(f"--port {port}: not a TCP port; give one of 1..65535 (0: any free one).")
    limits = limits or Limits()
    handler = type("Handler", (EditorHandler,), {"service": None, "page": load_page(),
                                                 "allow_any_host": not is_loopback(host),
                                                 "timeout": limits.request_timeout_s})
    server_cls = http.server.ThreadingHTTPServer
    if ":" in host.strip("[]"):
        server_cls = type("ThreadingHTTPServerV6", (server_cls,), {"address_family": socket.AF_INET6})
    try:
        server = server_cls((host.strip("[]"), port), handler)
    except (OSError, OverflowError, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or e
        raise UserError(f"cannot listen on {host}:{port} ({reason}); pick another --port (0: any free "
                        "one) or --host.") from None
    server.daemon_threads = True
    if not is_loopback(host):
        logging.warning("serving on %s, not loopback: anyone who can reach this address and port can use the "
                        "editor and its model (there is no authentication).", host)
    return server


def attach(server, service: EditorService):
    """Give a bound server (`bind`) the service its requests go to."""
    server.RequestHandlerClass.service = service
    server.RequestHandlerClass.timeout = service.limits.request_timeout_s
    return server


def make_server(service: EditorService, host: str = "127.0.0.1", port: int = 8000):
    """A ThreadingHTTPServer serving the page and the API (port 0: a free port)."""
    return attach(bind(host, port, service.limits), service)


def list_test_scenes(config, dataroot: Optional[str] = None) -> Dict[str, Tuple[str, Optional[str]]]:
    """{scene name: (label file, instance file | None)} of the config's test split ({} when absent)."""
    data = copy.deepcopy(config.data)
    if dataroot:
        data.dataroot = dataroot
    if data.dataset_format not in ("aligned", "cityscapes"):
        logging.warning("data.dataset_format=%r: the editor lists test scenes of 'aligned' and 'cityscapes' "
                        "folders only; upload label maps instead.", data.dataset_format)
        return {}
    try:
        source = read_source(data, "test")
    except DataError as e:
        logging.warning("no test-split scenes to list (%s); upload label maps, or pass --dataroot.", e)
        return {}
    return {ex.name: (ex.label, ex.inst) for ex in source.examples}


def create(workdir: str, host: str = "127.0.0.1", port: int = 8000, dataroot: Optional[str] = None,
           clusters: Optional[str] = None, seed: int = 0, limits: Optional[Limits] = None, warmup: bool = True,
           dtype: Optional[str] = None, resize: str = "config"):
    """(server, service) for a workdir's model, compiled for its test scenes' size, not yet serving.
    The address is bound first: a taken port is said before the model is loaded and compiled."""
    server = bind(host, port, limits)
    try:
        synth = Synthesizer.from_workdir(workdir, clusters, dtype=dtype)
        service = EditorService(synth, list_test_scenes(synth.config, dataroot), limits, seed, resize)
        if warmup and service.scenes:  # compile the generator for the test scenes' size before the first visit
            start = time.time()
            name = next(iter(service.scenes))
            service.close({"session": service.open_scene({"scene": name})["session"]})
            logging.info("generator compiled for the test scenes' size in %.1f s", time.time() - start)
    except BaseException:
        server.server_close()
        raise
    return attach(server, service), service


def serve(workdir: str, host: str = "127.0.0.1", port: int = 8000, **kwargs):
    """`pix2pixhd-jax serve`: create(...) and serve until Ctrl-C."""
    server, service = create(workdir, host, port, **kwargs)
    bound_host, bound_port = server.server_address[:2]
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"editor: http://{url_host}:{bound_port}/ ({len(service.scenes)} test scenes; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
