"""A tiny HTTPS client for request shapes `requests` cannot send.

`h1` writes HTTP/1.1 by hand: the request target byte for byte (no
normalisation), repeated headers, a body in several chunked pieces, chunked
trailers. `h2` drives the `h2` library: a raw `:path`, the body in N DATA
frames, request trailers (a second HEADERS frame with END_STREAM), trailers
with no body at all. Both speak TLS to localhost, trust the test CA, may
present a client certificate, and give up after `timeout` seconds.

Both return a `Response`, which unpacks as `(status, headers, body)` and has
`.test_id`, so `Client.as_saw(r)` / `Client.api_saw(r)` of conftest.py work on
it. A stream the server reset, or a connection closed before any response, is
`status == 0` with `.reset` saying what happened.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field

from h2 import config as h2_config
from h2 import connection as h2_connection
from h2 import events as h2_events
from h2 import exceptions as h2_exceptions

Header = tuple[str | bytes, str | bytes]
Body = bytes | str | list[bytes | str] | None

TIMEOUT = 15.0


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    test_id: str | None = None
    # Why there is no response (a reset stream, a closed connection), if there is none.
    reset: str | None = None
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def __iter__(self):
        return iter((self.status, self.headers, self.body))

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case), or None."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    @property
    def error(self) -> str | None:
        """The OAuth `error`: from a JSON body, else from `WWW-Authenticate: Bearer error="..."`."""
        try:
            doc = self.json()
            if isinstance(doc, dict) and isinstance(doc.get("error"), str):
                return doc["error"]
        except ValueError:
            pass
        m = re.search(r'error="([^"]*)"', self.header("www-authenticate") or "")
        return m.group(1) if m else None

    def __repr__(self):
        return (f"Response(status={self.status}, reset={self.reset!r}, headers={self.headers!r}, "
                f"body={self.body[:400]!r})")


def new_test_id() -> str:
    return uuid.uuid4().hex


def _b(x: str | bytes) -> bytes:
    return x if isinstance(x, bytes) else x.encode("utf-8")


def _pieces(body: Body) -> list[bytes] | None:
    if body is None:
        return None
    if isinstance(body, (bytes, str)):
        return [_b(body)]
    return [_b(p) for p in body]


def _connect(port: int, ca: str, cert: tuple[str, str] | None, alpn: str, timeout: float, host: str) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=ca)
    if cert is not None:
        ctx.load_cert_chain(*cert)
    ctx.set_alpn_protocols([alpn])
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        tls = ctx.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    if tls.selected_alpn_protocol() != alpn:
        tls.close()
        raise ConnectionError(f"the server did not agree to {alpn} (ALPN {tls.selected_alpn_protocol()!r})")
    return tls


class _Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete response in time")
        return left


# ---------------------------------------------------------------- HTTP/1.1


def h1(
    port: int,
    method: str,
    path: str | bytes,
    headers: list[Header] = (),
    body: Body = None,
    *,
    ca: str,
    cert: tuple[str, str] | None = None,
    trailers: list[Header] | None = None,
    chunked: bool | None = None,
    test_id: str | None = None,
    host: str = "localhost",
    timeout: float = TIMEOUT,
) -> Response:
    """One HTTP/1.1 request on its own connection (`Connection: close`).

    `path` goes on the request line as given. `headers` is a list (repeats
    kept, order kept); `Host`, `Content-Length` / `Transfer-Encoding` and
    `Connection` are added unless the list has them. A `body` that is a list
    of pieces, or any `trailers`, is sent chunked (one chunk per piece, each in
    its own write) unless `chunked=False`.
    """
    pieces = _pieces(body)
    if chunked is None:
        chunked = trailers is not None or (body is not None and not isinstance(body, (bytes, str)))
    hs = [(_b(k), _b(v)) for k, v in headers]
    if test_id is not None:
        hs.append((b"x-test-id", _b(test_id)))
    names = {k.lower() for k, _ in hs}
    if b"host" not in names:
        hs.insert(0, (b"host", f"{host}:{port}".encode()))
    if chunked and b"transfer-encoding" not in names:
        hs.append((b"transfer-encoding", b"chunked"))
    elif not chunked and pieces is not None and b"content-length" not in names:
        hs.append((b"content-length", str(sum(map(len, pieces))).encode()))
    if b"connection" not in names:
        hs.append((b"connection", b"close"))
    head = _b(method) + b" " + _b(path) + b" HTTP/1.1\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in hs) + b"\r\n"

    deadline = _Deadline(timeout)
    tls = _connect(port, ca, cert, "http/1.1", timeout, host)
    try:
        try:
            tls.sendall(head)
            for p in pieces or []:
                if chunked:
                    if p:  # an empty chunk would end the body
                        tls.sendall(b"%x\r\n" % len(p) + p + b"\r\n")
                else:
                    tls.sendall(p)
            if chunked:
                tail = b"".join(_b(k) + b": " + _b(v) + b"\r\n" for k, v in (trailers or []))
                tls.sendall(b"0\r\n" + tail + b"\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the server may answer (and close) before the body is all sent: read what it said
        return _read_h1(tls, method, deadline, test_id)
    finally:
        tls.close()


class _Reader:
    def __init__(self, tls: ssl.SSLSocket, deadline: _Deadline):
        self.tls, self.deadline, self.buf = tls, deadline, b""

    def _more(self) -> bool:
        self.tls.settimeout(self.deadline.left())
        try:
            chunk = self.tls.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            chunk = b""
        self.buf += chunk
        return bool(chunk)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._more():
                raise EOFError("connection closed mid-line")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._more():
                raise EOFError("connection closed mid-body")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self) -> bytes:
        while self._more():
            pass
        out, self.buf = self.buf, b""
        return out


def _read_h1(tls: ssl.SSLSocket, method: str, deadline: _Deadline, test_id: str | None) -> Response:
    r = _Reader(tls, deadline)
    try:
        while True:
            status_line = r.line()
            status = int(status_line.split(b" ", 2)[1])
            headers = []
            while line := r.line():
                k, _, v = line.partition(b":")
                headers.append((k.strip().decode("latin-1").lower(), v.strip().decode("latin-1")))
            if not 100 <= status < 200:
                break
    except EOFError:
        return Response(0, [], b"", test_id, reset="connection closed before a response")
    get = lambda n: next((v for k, v in headers if k == n), None)  # noqa: E731
    if method.upper() == "HEAD" or status in (204, 304):
        body = b""
    elif "chunked" in (get("transfer-encoding") or "").lower():
        body = b""
        while True:
            size = int(r.line().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while r.line():  # response trailers
                    pass
                break
            body += r.exactly(size)
            r.line()
    elif get("content-length") is not None:
        body = r.exactly(int(get("content-length")))
    else:
        body = r.rest()
    return Response(status, headers, body, test_id)


# ---------------------------------------------------------------- HTTP/2


def h2(
    port: int,
    method: str,
    path: str | bytes,
    headers: list[Header] = (),
    body: Body = None,
    *,
    ca: str,
    cert: tuple[str, str] | None = None,
    trailers: list[Header] | None = None,
    authority: str | None = None,
    scheme: str = "https",
    test_id: str | None = None,
    host: str = "localhost",
    timeout: float = TIMEOUT,
) -> Response:
    """One HTTP/2 stream on its own connection.

    `path` is the `:path` as given. Headers go out as listed (repeats kept,
    no validation or normalisation by the h2 library: names should be
    lowercase, as HTTP/2 requires). A `body` that is a list is sent one DATA
    frame per piece (an empty piece is an empty DATA frame). `trailers` are a
    second HEADERS frame carrying END_STREAM; with `body=None` that is
    HEADERS, then trailers, and no DATA at all.
    """
    pieces = _pieces(body) or []
    hs = [
        (b":method", _b(method)),
        (b":path", _b(path)),
        (b":authority", _b(authority or f"{host}:{port}")),
        (b":scheme", _b(scheme)),
    ] + [(_b(k), _b(v)) for k, v in headers]
    if test_id is not None:
        hs.append((b"x-test-id", _b(test_id)))
    config = h2_config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2_connection.H2Connection(config=config)
    deadline = _Deadline(timeout)
    tls = _connect(port, ca, cert, "h2", timeout, host)
    state = _H2Stream()
    try:
        conn.initiate_connection()
        tls.sendall(conn.data_to_send())
        sid = conn.get_next_available_stream_id()
        state.sid = sid
        try:
            conn.send_headers(sid, hs, end_stream=not pieces and not trailers)
            tls.sendall(conn.data_to_send())
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                _send_data(conn, tls, state, deadline, piece, end_stream=last and not trailers)
                if state.done:
                    break
            if trailers and not state.done:
                conn.send_headers(sid, [(_b(k), _b(v)) for k, v in trailers], end_stream=True)
                tls.sendall(conn.data_to_send())
        except (h2_exceptions.StreamClosedError, BrokenPipeError, ConnectionResetError):
            pass  # answered (and closed) before everything was sent: read the answer
        while not state.done:
            _pump(conn, tls, state, deadline)
        try:
            conn.close_connection()
            tls.sendall(conn.data_to_send())
        except OSError:
            pass
    finally:
        tls.close()
    if state.status is None:
        return Response(0, [], bytes(state.body), test_id, reset=state.reset or "no response")
    return Response(state.status, state.headers, bytes(state.body), test_id, reset=state.reset, trailers=state.trailers)


@dataclass
class _H2Stream:
    sid: int = 0
    status: int | None = None
    headers: list = field(default_factory=list)
    trailers: list = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    done: bool = False
    reset: str | None = None


def _decode(headers) -> list[tuple[str, str]]:
    return [(_b(k).decode("latin-1"), _b(v).decode("latin-1")) for k, v in headers]


def _pump(conn, tls, state: _H2Stream, deadline: _Deadline):
    """Reads once from the socket and handles the events."""
    tls.settimeout(deadline.left())
    try:
        data = tls.recv(65536)
    except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
        data = b""
    if not data:
        state.done = True
        state.reset = state.reset or ("connection closed" if state.status is None else None)
        return
    for ev in conn.receive_data(data):
        if getattr(ev, "stream_id", state.sid) not in (state.sid, 0):
            continue
        if isinstance(ev, h2_events.ResponseReceived):
            hs = _decode(ev.headers)
            state.status = int(next(v for k, v in hs if k == ":status"))
            state.headers = [(k, v) for k, v in hs if not k.startswith(":")]
        elif isinstance(ev, h2_events.DataReceived):
            state.body += ev.data
            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2_events.TrailersReceived):
            state.trailers = _decode(ev.headers)
        elif isinstance(ev, h2_events.StreamEnded):
            state.done = True
        elif isinstance(ev, h2_events.StreamReset):
            state.done = True
            if state.status is None:
                state.reset = f"stream reset ({ev.error_code!r})"
        elif isinstance(ev, h2_events.ConnectionTerminated):
            state.done = True
            if state.status is None:
                state.reset = f"GOAWAY ({ev.error_code!r})"
    out = conn.data_to_send()
    if out:
        try:
            tls.sendall(out)
        except OSError:
            pass


def _send_data(conn, tls, state: _H2Stream, deadline: _Deadline, piece: bytes, end_stream: bool):
    """One piece in DATA frames (one, unless flow control or the frame size splits it)."""
    if not piece:
        conn.send_data(state.sid, b"", end_stream=end_stream)
        tls.sendall(conn.data_to_send())
        return
    while piece and not state.done:
        n = min(len(piece), conn.local_flow_control_window(state.sid), conn.max_outbound_frame_size)
        if n <= 0:
            _pump(conn, tls, state, deadline)  # wait for a WINDOW_UPDATE
            continue
        chunk, piece = piece[:n], piece[n:]
        conn.send_data(state.sid, chunk, end_stream=end_stream and not piece)
        tls.sendall(conn.data_to_send())
