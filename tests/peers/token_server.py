"""OAuth2 client-credentials token endpoint for tests and the demo.

    ts = TokenServer(port=0, cert=..., key=..., client_id="id", client_secret="s",
                     audience="zeebe.test.local").start()
    ts.url            https://localhost:PORT/oauth/token (http:// without cert)
    ts.fetches        tokens issued
    ts.requests       every request: {"method", "path", "headers" (lower-case
                      names), "form" (dict, the secret included so tests can
                      check it was sent), "status"}
    ts.is_valid(tok)  True for a token we issued that has not expired
                      ("Bearer " prefix accepted) - the gateway peer's check
    ts.fail_next(n, status=500, retry_after=None), ts.set_down(True, mode="close"|"503"),
    ts.delay_s = 2.0, ts.revoke_all()
    ts.reject_description = "..."  error_description of the 401/400 answers
    ts.token_size = N     issue tokens of N characters (limits tests)
    TokenServer.every_token_issued()  every token any server of this process
                      issued (the suite-wide "never in a log" check)

Validation: POST, Content-Type application/x-www-form-urlencoded,
grant_type=client_credentials, client_id/client_secret (401 invalid_client
otherwise), audience and scope when configured. Nothing here prints a token
or the secret.

CLI (demo): token_server.py --port P [--cert C --key K] --client-id I
--client-secret S [--audience A] [--expires-in N]; one line per issued token.
"""

import argparse
import http.server
import json
import secrets
import signal
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse

FORM_TYPE = "application/x-www-form-urlencoded"

_EVERY_TOKEN = []
_EVERY_LOCK = threading.Lock()


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, owner):
        self.owner = owner
        super().__init__(addr, _Handler)

    def handle_error(self, request, client_address):
        # A client that gave up (timeout, cancelled) is not our error.
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def finish_request(self, request, client_address):
        # Runs in the per-connection thread, so a slow or failing TLS
        # handshake never blocks accept().
        owner = self.owner
        if owner.down and owner.down_mode == "close":
            with owner.lock:
                owner.refused += 1
            request.close()
            return
        if owner.ssl_ctx is not None:
            request.settimeout(10)
            try:
                request = owner.ssl_ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                with owner.lock:
                    owner.tls_failures += 1
                request.close()
                return
        super().finish_request(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "m2z-token-server/1"

    def log_message(self, fmt, *args):  # never print requests (forms hold secrets)
        pass

    def _reply(self, status, obj, retry_after=None):
        owner = self.server.owner
        body = json.dumps(obj).encode()
        self.close_connection = True
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        if owner.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            # Small chunks, one with an extension, to exercise the parser.
            for i in range(0, len(body), 7):
                part = body[i:i + 7]
                ext = ";note=x" if i == 0 else ""
                self.wfile.write(b"%x%s\r\n%s\r\n" % (len(part), ext.encode(), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        return status

    def _record(self, form, status):
        owner = self.server.owner
        with owner.lock:
            owner.requests.append({
                "method": self.command, "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "form": form, "status": status, "time": time.monotonic(),
            })

    def _read_form(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        try:
            pairs = urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True,
                                           strict_parsing=bool(raw))
        except (ValueError, UnicodeDecodeError):
            return None
        return dict(pairs)

    def do_POST(self):  # noqa: N802
        form = self._read_form()
        status = self._handle(form)
        self._record(form, status)

    def _handle(self, form):
        owner = self.server.owner
        if owner.down:
            return self._reply(503, {"error": "temporarily_unavailable"})
        if owner.delay_s:
            time.sleep(owner.delay_s)
        with owner.lock:
            fail = owner._fail_left > 0
            if fail:
                owner._fail_left -= 1
        if fail:
            return self._reply(owner._fail_status, {"error": "server_error",
                                                    "error_description": "injected failure"},
                               retry_after=owner._fail_retry_after)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != FORM_TYPE or form is None:
            return self._reply(400, {"error": "invalid_request",
                                     "error_description": "expected a form body"})
        if form.get("grant_type") != "client_credentials":
            return self._reply(400, {"error": "unsupported_grant_type"})
        if (form.get("client_id") != owner.client_id
                or form.get("client_secret") != owner.client_secret):
            return self._reply(401, {"error": "invalid_client",
                                     "error_description": owner.reject_description
                                     or "bad client credentials"})
        if owner.audience is not None and form.get("audience") != owner.audience:
            return self._reply(400, {"error": "invalid_request",
                                     "error_description": owner.reject_description
                                     or "unknown audience"})
        if owner.scope is not None and form.get("scope") != owner.scope:
            return self._reply(400, {"error": "invalid_scope"})
        return self._reply(200, owner._issue())

    def _not_allowed(self):
        self._record(None, 405)
        self._reply(405, {"error": "invalid_request", "error_description": "POST only"})

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815


class TokenServer:
    def __init__(self, port=0, cert=None, key=None, client_id="m2z-test-client",
                 client_secret="secret", audience=None, scope=None, expires_in=300,
                 expires_in_as_string=False, chunked=False, token_type="bearer",
                 host="127.0.0.1", on_issue=None):
        self.port = port
        self.host = host
        self.cert, self.key = cert, key
        self.client_id, self.client_secret = client_id, client_secret
        self.audience, self.scope = audience, scope
        self.expires_in = expires_in          # None: no expires_in member
        self.expires_in_as_string = expires_in_as_string
        self.chunked = chunked
        self.token_type = token_type
        self.delay_s = 0.0
        self.reject_description = None
        self.down = False
        self.down_mode = "close"
        self.on_issue = on_issue              # callback(n, expires_in), no token
        self.lock = threading.Lock()
        self.requests = []
        self.fetches = 0
        self.refused = 0
        self.tls_failures = 0
        self._issued = {}                     # token -> (monotonic issue time, expires_in)
        self._all_tokens = []
        self._fail_left = 0
        self._fail_status = 500
        self._fail_retry_after = None
        self.token_size = None                # None: "tok-N-<16 hex>"
        self._srv = None
        self._thread = None
        self.ssl_ctx = None
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(cert, key)
            self.ssl_ctx = ctx

    # ---------------------------------------------------------------- life

    def start(self):
        self._srv = _Server((self.host, self.port), self)
        self.port = self._srv.server_address[1]
        self._thread = threading.Thread(target=self._srv.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._srv:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None

    @property
    def url(self):
        return "%s://localhost:%d/oauth/token" % ("https" if self.ssl_ctx else "http", self.port)

    # ---------------------------------------------------------------- faults

    def fail_next(self, n, status=500, retry_after=None):
        """The next N requests get STATUS; RETRY_AFTER (seconds, or an HTTP
        date string) is sent as a Retry-After header when given."""
        with self.lock:
            self._fail_left = n
            self._fail_status = status
            self._fail_retry_after = retry_after

    def set_down(self, down=True, mode="close"):
        """Down: "close" drops connections before TLS; "503" answers 503."""
        self.down_mode = mode
        self.down = bool(down)

    def revoke_all(self):
        with self.lock:
            self._issued.clear()

    # ---------------------------------------------------------------- tokens

    def _issue(self):
        with self.lock:
            self.fetches += 1
            n = self.fetches
            tok = "tok-%d-%s" % (n, secrets.token_hex(8))
            if self.token_size:
                tok += "x" * max(0, self.token_size - len(tok))
            self._issued[tok] = (time.monotonic(), self.expires_in)
            self._all_tokens.append(tok)
            with _EVERY_LOCK:
                _EVERY_TOKEN.append(tok)
        obj = {"access_token": tok, "token_type": self.token_type}
        if self.expires_in is not None:
            obj["expires_in"] = str(self.expires_in) if self.expires_in_as_string else self.expires_in
        if self.scope is not None:
            obj["scope"] = self.scope
        if self.on_issue:
            self.on_issue(n, self.expires_in)
        return obj

    def is_valid(self, token):
        if not token:
            return False
        if token[:7].lower() == "bearer ":
            token = token[7:]
        with self.lock:
            ent = self._issued.get(token)
        if ent is None:
            return False
        t0, exp = ent
        return exp is None or time.monotonic() < t0 + exp

    @staticmethod
    def every_token_issued():
        """Every token issued by any TokenServer in this process."""
        with _EVERY_LOCK:
            return list(_EVERY_TOKEN)

    def tokens_issued(self):
        """Every token issued so far (for "never logged" checks)."""
        with self.lock:
            return list(self._all_tokens)

    def form_requests(self):
        """The recorded POST requests (copies)."""
        with self.lock:
            return [dict(r) for r in self.requests if r["method"] == "POST"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--audience")
    ap.add_argument("--scope")
    ap.add_argument("--expires-in", type=int, default=300)
    a = ap.parse_args(argv)

    def issued(n, exp):
        print("issued token #%d (expires_in=%s)" % (n, exp), flush=True)

    ts = TokenServer(port=a.port, host=a.host, cert=a.cert, key=a.key, client_id=a.client_id,
                     client_secret=a.client_secret, audience=a.audience, scope=a.scope,
                     expires_in=a.expires_in, on_issue=issued).start()
    print("token endpoint listening: %s (client_id=%s)" % (ts.url, a.client_id), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    ts.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
