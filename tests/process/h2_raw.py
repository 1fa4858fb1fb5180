"""A raw HTTP/2 + gRPC client for the attack tests (Python 3 standard library only).

Independent of gRPC and of the project's clients: it writes the frames itself
(connection preface, SETTINGS, HEADERS with HPACK literal fields, DATA, RST_STREAM,
WINDOW_UPDATE) so that a test can do what a well-behaved client never does -- open
streams whose request never completes, never acknowledge SETTINGS, send bytes that
are not a protobuf message, send strings that are not UTF-8.

Responses are decoded enough to read every stream's headers, trailers (HPACK with
the dynamic table and Huffman strings), data and RST_STREAM code.
"""

import socket
import struct
import time
import urllib.parse

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
REFUSED_STREAM = 0x7

SCENE_SERVICE = "/flexgs.v1.SceneService/"

# --- HPACK -----------------------------------------------------------------------

_STATIC = [
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"), (":path", "/index.html"),
    (":scheme", "http"), (":scheme", "https"), (":status", "200"), (":status", "204"), (":status", "206"),
    (":status", "304"), (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""), ("accept", ""),
    ("access-control-allow-origin", ""), ("age", ""), ("allow", ""), ("authorization", ""),
    ("cache-control", ""), ("content-disposition", ""), ("content-encoding", ""), ("content-language", ""),
    ("content-length", ""), ("content-location", ""), ("content-range", ""), ("content-type", ""),
    ("cookie", ""), ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""), ("max-forwards", ""),
    ("proxy-authenticate", ""), ("proxy-authorization", ""), ("range", ""), ("referer", ""), ("refresh", ""),
    ("retry-after", ""), ("server", ""), ("set-cookie", ""), ("strict-transport-security", ""),
    ("transfer-encoding", ""), ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
]

# RFC 7541 Appendix B code lengths for symbols 0..256; the code is canonical, so the
# codes follow from the lengths.
_HUFFMAN_LENGTHS = bytes.fromhex(
    "0d171c1c1c1c1c1c1c181e1c1c1e1c1c1c1c1c1c1c1c1e1c1c1c1c1c1c1c1c1c060a0a0c0d06080b0a0a080b080606060505"
    "050606060606060607080f060c0a0d06070707070707070707070707070707070707070707070807080d130d0e060f050605"
    "06050606060507070606060506070605050607070707070f0b0e0d1c141614141616161716171717171718171818161718"
    "171717171516171617171816151416161717151716161815161717151516151716171714161616171616171a1a14131617"
    "16191a1a1a1b1b1a181913151a1b1b1a1b1815151a1a1c1b1b1b14181415161515171616191918181a171a1b1a1a1b1b1b"
    "1b1b1c1b1b1b1b1b1a1e")


def _huffman_table():
    order = sorted(range(257), key=lambda s: (_HUFFMAN_LENGTHS[s], s))
    table, code, prev = {}, 0, _HUFFMAN_LENGTHS[order[0]]
    for i, sym in enumerate(order):
        if i:
            code = (code + 1) << (_HUFFMAN_LENGTHS[sym] - prev)
        prev = _HUFFMAN_LENGTHS[sym]
        table[(prev, code)] = sym
    return table


_HUFFMAN = _huffman_table()


def huffman_decode(data):
    out, code, bits = bytearray(), 0, 0
    for byte in data:
        for i in range(7, -1, -1):
            code = (code << 1) | ((byte >> i) & 1)
            bits += 1
            sym = _HUFFMAN.get((bits, code))
            if sym is not None:
                if sym == 256:
                    raise ValueError("EOS in Huffman string")
                out.append(sym)
                code, bits = 0, 0
    return bytes(out)


def _encode_int(value, prefix_bits, first_byte_flags=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = bytearray([first_byte_flags | limit])
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _as_bytes(s):
    return s if isinstance(s, (bytes, bytearray)) else s.encode("latin-1")


def hpack_encode(headers):
    """Every field as 'literal without indexing, new name', no Huffman."""
    out = bytearray()
    for name, value in headers:
        name, value = _as_bytes(name), _as_bytes(value)
        out += b"\x00" + _encode_int(len(name), 7) + name + _encode_int(len(value), 7) + value
    return bytes(out)


class HpackDecoder:
    def __init__(self):
        self.dynamic = []  # newest first
        self.max_size = 4096

    def _size(self):
        return sum(32 + len(n) + len(v) for n, v in self.dynamic)

    def _add(self, name, value):
        self.dynamic.insert(0, (name, value))
        while self._size() > self.max_size and self.dynamic:
            self.dynamic.pop()

    def _entry(self, index):
        if index <= 0:
            raise ValueError("HPACK index 0")
        if index <= len(_STATIC):
            n, v = _STATIC[index - 1]
            return n.encode(), v.encode()
        return self.dynamic[index - len(_STATIC) - 1]

    @staticmethod
    def _int(data, pos, prefix_bits):
        limit = (1 << prefix_bits) - 1
        value = data[pos] & limit
        pos += 1
        if value < limit:
            return value, pos
        shift = 0
        while True:
            b = data[pos]
            pos += 1
            value += (b & 127) << shift
            shift += 7
            if not b & 128:
                return value, pos

    def _string(self, data, pos):
        huffman = data[pos] & 0x80
        length, pos = self._int(data, pos, 7)
        raw = bytes(data[pos:pos + length])
        return (huffman_decode(raw) if huffman else raw), pos + length

    def decode(self, data):
        headers, pos = [], 0
        while pos < len(data):
            b = data[pos]
            if b & 0x80:  # indexed
                index, pos = self._int(data, pos, 7)
                headers.append(self._entry(index))
            elif b & 0x40:  # literal with incremental indexing
                index, pos = self._int(data, pos, 6)
                name = self._entry(index)[0] if index else None
                if name is None:
                    name, pos = self._string(data, pos)
                value, pos = self._string(data, pos)
                self._add(name, value)
                headers.append((name, value))
            elif b & 0x20:  # dynamic table size update
                self.max_size, pos = self._int(data, pos, 5)
                while self._size() > self.max_size and self.dynamic:
                    self.dynamic.pop()
            else:  # literal without indexing / never indexed
                index, pos = self._int(data, pos, 4)
                name = self._entry(index)[0] if index else None
                if name is None:
                    name, pos = self._string(data, pos)
                value, pos = self._string(data, pos)
                headers.append((name, value))
        return headers


# --- protobuf and gRPC framing -----------------------------------------------------

def pb_varint(value):
    out = bytearray()
    while True:
        b = value & 127
        value >>= 7
        if value:
            out.append(b | 128)
        else:
            out.append(b)
            return bytes(out)


def pb_bytes(field, data):
    data = _as_bytes(data) if isinstance(data, str) else data
    return pb_varint(field << 3 | 2) + pb_varint(len(data)) + data


def pb_double(field, value):
    return pb_varint(field << 3 | 1) + struct.pack("<d", value)


def pb_uint(field, value):
    return pb_varint(field << 3) + pb_varint(value)


def stream_request(scene_id, ratio=0.5, max_chunk_bytes=0):
    """A flexgs.v1.StreamSceneRequest (scene_id may be any bytes)."""
    msg = pb_bytes(1, scene_id) + pb_double(3, ratio)
    if max_chunk_bytes:
        msg += pb_uint(8, max_chunk_bytes)
    return msg


def grpc_message(payload, declared_length=None):
    n = len(payload) if declared_length is None else declared_length
    return b"\x00" + struct.pack(">I", n) + payload


# --- the connection --------------------------------------------------------------

class Stream:
    def __init__(self):
        self.headers = None
        self.trailers = None
        self.data = bytearray()
        self.rst = None
        self.ended = False
        self.closed_at = None

    @property
    def done(self):
        return self.ended or self.rst is not None

    def _all(self):
        return (self.trailers or []) + (self.headers or [])

    def field(self, name):
        for n, v in self._all():
            if n == name.encode():
                return v.decode("latin-1")
        return None

    @property
    def grpc_status(self):
        v = self.field("grpc-status")
        return None if v is None else int(v)

    @property
    def grpc_message(self):
        v = self.field("grpc-message")
        return None if v is None else urllib.parse.unquote(v, errors="replace")


class H2Conn:
    """One HTTP/2 connection. ack_settings=False: never acknowledge the server's
    SETTINGS (its limits then are not in force for us, as HTTP/2 allows)."""

    def __init__(self, host, port, source=None, ack_settings=True, timeout=10.0, window=None,
                 read_data=True):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.authority = f"{host}:{port}"
        self.ack_settings = ack_settings
        self.read_data = read_data
        self.buf = bytearray()
        self.streams = {}
        self.next_id = 1
        self.server_settings = {}
        self.goaway = None
        self.closed = False
        self.decoder = HpackDecoder()
        self._header_block = None  # (stream id, bytes, end_stream) while CONTINUATIONs come
        self.send_window = 65535  # connection-level flow control for what we send
        self.stream_windows = {}
        self.initial_stream_window = 65535
        settings = b""
        if window is not None:
            settings += struct.pack(">HI", SETTINGS_INITIAL_WINDOW_SIZE, window)
        self.sock.sendall(PREFACE + self._frame(SETTINGS, 0, 0, settings))

    @staticmethod
    def _frame(ftype, flags, stream_id, payload=b""):
        return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream_id) + payload

    def send(self, data):
        """Sends `data`; a connection the server closed is marked closed (no exception)."""
        if self.closed:
            return
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def headers_frame(self, stream_id, headers, end_stream=False):
        return self._frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), stream_id, hpack_encode(headers))

    def data_frames(self, stream_id, data, end_stream=False):
        out = bytearray()
        for off in range(0, max(len(data), 1), 16384):
            last = off + 16384 >= len(data)
            out += self._frame(DATA, END_STREAM if (end_stream and last) else 0, stream_id, data[off:off + 16384])
        return bytes(out)

    def rst_frame(self, stream_id, code=0x8):
        return self._frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))

    def grpc_headers(self, method, metadata=()):
        return [(":method", "POST"), (":scheme", "http"), (":path", SCENE_SERVICE + method if "/" not in method
                                                            else method),
                (":authority", self.authority), ("content-type", "application/grpc"), ("te", "trailers")] + \
            list(metadata)

    def open_stream(self, method, body=None, end_stream=True, metadata=(), send=True):
        """Starts a call; returns (stream id, the HEADERS bytes). body None: headers only.
        The body is sent as the server's flow-control windows allow; send=False: nothing
        is sent, and the bytes returned include the body (not flow-controlled)."""
        sid = self.new_stream()
        out = self.headers_frame(sid, self.grpc_headers(method, metadata), end_stream=end_stream and body is None)
        if not send:
            if body is not None:
                out += self.data_frames(sid, body, end_stream=end_stream)
            return sid, out
        self.send(out)
        if body is not None:
            self.send_data_flow_controlled(sid, body, end_stream=end_stream)
        return sid, out

    def new_stream(self):
        sid = self.next_id
        self.next_id += 2
        self.streams[sid] = Stream()
        self.stream_windows[sid] = self.initial_stream_window
        return sid

    def send_data_flow_controlled(self, sid, data, end_stream=False, patience=2.0):
        """Sends `data` on `sid` as the peer's windows allow, waiting up to `patience` s
        for WINDOW_UPDATEs each time they run out. Returns the bytes sent."""
        sent = 0
        while sent < len(data):
            s = self.streams[sid]
            if s.done or self.closed:
                break
            n = min(16384, len(data) - sent, self.send_window, self.stream_windows.get(sid, 0))
            if n <= 0:
                if not self.wait(lambda: self.streams[sid].done or (
                        self.send_window > 0 and self.stream_windows.get(sid, 0) > 0), patience):
                    break
                continue
            last = sent + n == len(data)
            self.send(self._frame(DATA, END_STREAM if (end_stream and last) else 0, sid, data[sent:sent + n]))
            self.send_window -= n
            self.stream_windows[sid] -= n
            sent += n
        return sent

    def call(self, method, body, metadata=(), timeout=10.0):
        sid, _ = self.open_stream(method, body, metadata=metadata)
        self.wait(lambda: self.streams[sid].done, timeout)
        return self.streams[sid]

    # Reading

    def pump(self, timeout):
        """Reads and handles whatever arrives within `timeout` s (at least one read)."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(1 << 16)
        except (socket.timeout, BlockingIOError):
            return
        except (ConnectionResetError, BrokenPipeError, OSError):
            self.closed = True
            return
        if not chunk:
            self.closed = True
            return
        self.buf += chunk
        replies = bytearray()
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[0:3], "big")
            if len(self.buf) < 9 + length:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.buf[9:9 + length])
            del self.buf[:9 + length]
            replies += self._handle(ftype, flags, sid, payload)
        if replies and not self.closed:
            try:
                self.sock.sendall(replies)
            except OSError:
                self.closed = True

    def wait(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return predicate()
            self.pump(min(left, 0.2))
        return True

    def _handle(self, ftype, flags, sid, payload):
        out = b""
        if ftype == SETTINGS:
            if not flags & ACK:
                for i in range(0, len(payload) - 5, 6):
                    key, value = struct.unpack(">HI", payload[i:i + 6])
                    self.server_settings[key] = value
                    if key == SETTINGS_INITIAL_WINDOW_SIZE:
                        delta = value - self.initial_stream_window
                        self.initial_stream_window = value
                        for k in self.stream_windows:
                            self.stream_windows[k] += delta
                if self.ack_settings:
                    out += self._frame(SETTINGS, ACK, 0)
        elif ftype == PING and not flags & ACK:
            out += self._frame(PING, ACK, 0, payload)
        elif ftype in (HEADERS, CONTINUATION):
            if ftype == HEADERS:
                if flags & PADDED:
                    pad = payload[0]
                    payload = payload[1:len(payload) - pad]
                if flags & PRIORITY_FLAG:
                    payload = payload[5:]
                self._header_block = (sid, bytearray(payload), bool(flags & END_STREAM))
            else:
                self._header_block[1].extend(payload)
            if flags & END_HEADERS:
                hsid, block, end = self._header_block
                self._header_block = None
                fields = self.decoder.decode(bytes(block))
                s = self.streams.setdefault(hsid, Stream())
                if s.headers is None and not end:
                    s.headers = fields
                elif s.headers is None:
                    s.headers = fields  # trailers-only
                    s.trailers = fields
                else:
                    s.trailers = fields
                if end:
                    s.ended = True
                    s.closed_at = time.monotonic()
        elif ftype == DATA:
            s = self.streams.setdefault(sid, Stream())
            data = payload
            if flags & PADDED:
                data = payload[1:len(payload) - payload[0]]
            if self.read_data:
                s.data += data
                if length := len(payload):
                    out += self._frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", length))
                    if not flags & END_STREAM:
                        out += self._frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", length))
            if flags & END_STREAM:
                s.ended = True
                s.closed_at = time.monotonic()
        elif ftype == RST_STREAM:
            s = self.streams.setdefault(sid, Stream())
            s.rst = struct.unpack(">I", payload[:4])[0]
            s.closed_at = time.monotonic()
        elif ftype == WINDOW_UPDATE:
            inc = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
            if sid == 0:
                self.send_window += inc
            elif sid in self.stream_windows:
                self.stream_windows[sid] += inc
        elif ftype == GOAWAY:
            self.goaway = struct.unpack(">II", payload[:8])
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True


def grpc_messages(data):
    """Splits a stream's DATA into gRPC message payloads."""
    out, pos = [], 0
    while pos + 5 <= len(data):
        n = struct.unpack(">I", data[pos + 1:pos + 5])[0]
        out.append(bytes(data[pos + 5:pos + 5 + n]))
        pos += 5 + n
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
