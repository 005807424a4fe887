// Package xhttp is Burrow's XHTTP transport: a byte stream carried as
// HTTP/2 requests over an already secured connection (REALITY TLS in
// Burrow), wire-compatible with Xray-core's XHTTP ("splithttp") in the
// packet-up, stream-up and (server side) stream-one modes, plus a Burrow
// extension that resumes the download on another connection, so the client
// can rotate TCP connections before any of them carries a byte budget
// downstream. It imports nothing else of Burrow's: the client gets a dial
// function, the server gets connections and a session callback. HTTP/2 on
// both sides is Go's net/http (a Transport's ClientConn, a Server), run
// with prior knowledge on the connections this package is given.
//
// # Requests (Xray-compatible)
//
// PATH is the configured path with a trailing slash; SID a random UUID
// (8-4-4-4-12 hex) per session; SEQ a decimal counter from 0.
//
//	mode        download (server → client)    upload (client → server)
//	packet-up   GET  PATH SID                  POST PATH SID/SEQ   body = next bytes
//	stream-up   GET  PATH SID                  POST PATH SID       body = the stream
//	stream-one  POST PATH (no SID): the response body is the download, the request body the upload
//
// Every request carries browser headers (Chrome's, for fetch()) and
// padding: Referer: https://HOST/PATH…?x_padding=XXX…, 100–1000 X's
// (Huffman-coded by HPACK as 8 bits each, so the length is the size on the
// wire). Responses carry X-Padding of random length. The server answers
// status 200; the download response has Content-Type text/event-stream,
// Cache-Control no-store and X-Accel-Buffering no. Xray's server ends a
// session when its download GET ends.
//
// # Burrow extension: resumable downloads and byte budgets
//
// A Burrow client adds to its download GET
//
//	Range:    bytes=START-END     offsets in the session's download stream, END inclusive
//	X-Budget: N                   (only with rotation on) bytes this TCP connection may
//	                              still carry towards the client after its TLS handshake
//
// and a Burrow server answers 206 with Content-Range: bytes START-END/*,
// sending download bytes from START. It may end the body early — when the
// connection's budget would be exceeded, or at the end of the stream —
// and the client asks again from where it stopped, on the same
// connection or, when it is spent, on a fresh one. A GET at START also
// acknowledges every byte before START: the server keeps sent bytes until
// then (up to RetainMax), so a connection cut at any byte loses nothing.
// When START is the end of a finished stream the server answers 416 with
// Content-Range: bytes */TOTAL, which the client takes as EOF, or, when
// the server's side ended as a reset (a splice passing on a TCP reset),
// 410 with X-Close: reset, which the client's Read returns as ErrReset; a START
// outside the kept window is answered 409. A newer GET for a session
// supersedes an older one still open on a dying connection, and a session
// lives ResumeTimeout without any GET attached before the server drops it.
//
//	client                          connection A (budget B)          server session
//	GET /p/SID  Range: bytes=0-…    ───────────────────────────────► ack 0, send from 0
//	            ◄── 206, bytes 0..k-1, body ends: A's budget is spent
//	GET /p/SID  Range: bytes=k-…    ─── connection B (fresh) ──────► ack k, send from k
//	            ◄── 206, bytes k..  (A cut at any byte j<k instead: ask again from j)
//
// Uploads in this mode are packet-up POSTs, retried with the same SEQ on
// another connection after a failure (the server drops duplicates). The
// client ends a session with one more packet-up POST carrying
//
//	X-Close: write     the upload is finished (half close)
//	X-Close: all       the session is over
//
// delivered in SEQ order. An Xray server ignores Range, X-Budget and
// X-Close and answers 200: the client then streams without resuming or
// rotating. An Xray client sends none of them and gets exactly Xray's
// behaviour.
//
// The server counts the bytes it writes on each connection (HTTP/2 frames
// plus an estimate of TLS record overhead) and never starts a DATA write
// that would take the connection past X-Budget minus a small reserve for
// control frames and response headers; the client, which counts real
// bytes received including the handshake, stops putting new requests on a
// connection close to its budget, moves downloads still waiting on it to a
// fresh connection, and closes it once idle. At most MaxConns connections
// are open to the server at once, however many sessions run — sessions are
// HTTP/2 streams — and a closed connection keeps its slot for about a round
// trip, until an observer on the path has seen the server's FIN too. The
// one exception is more sessions than MaxConns connections carry at the
// server's SETTINGS_MAX_CONCURRENT_STREAMS (a Burrow server advertises
// DefaultMaxStreams, 1000; servers built on Go's HTTP/2 default to 250):
// the client then opens further connections one at a time as each is
// filled, and closes them as the load drops. A connection at the stream
// limit is full, never retired for it.
//
// A download's DATA is written in pieces of 2–4 KiB while its connection
// has carried less than 64 KiB (then 16–64 KiB, or 4–16 KiB under a
// budget). An HTTP/2 reader passes on only whole frames, so a freeze in a
// connection's first kilobytes, before the client knows its budget,
// strands one small frame instead of everything after the handshake.
//
// Byte budget on the wire, per connection (what a censor counting bytes
// towards the client sees):
//
//	REALITY handshake (measured by the client) + 512 reserve for post-handshake records
//	+ X-Budget = everything the server writes after the handshake:
//	  SETTINGS, response HEADERS, WINDOW_UPDATEs, DATA frames, TLS record overhead (estimated)
//	  with DATA stopped 600 bytes + 40 per open download short of X-Budget.
//
// Opening a connection: the client sends one PING and waits for its answer before the first
// request, and the server holds its first response until the client has acknowledged its
// SETTINGS (at most 500 ms). Both keep the first flights after the REALITY handshake small,
// so a request and its answer never take the sizes of a TLS handshake carried inside TLS
// (hello, server flight, short Finished), which the censor lab's TLS-in-TLS detector (and
// the GFW's) looks for at the start of a connection. The PING makes it independent of
// timing: without it, a client whose SETTINGS acknowledgement travelled with its first
// request got the pattern now and then under CPU load.
//
// Later in the connection the client cuts HTTP/2's writes into TLS records (frameShaper,
// shape.go): a POST's headers go in one record with the start of its body, where Go writes them
// apart; and every write shorter than 160 bytes (Go's window updates after each 4 KiB read, SETTINGS
// and PING acknowledgements, stream resets, a short DATA frame alone) gets a padding frame of an
// unknown type (0xfb; RFC 9113 makes receivers ignore it) up to 192–384 bytes. Otherwise a
// request, its answer (an inner TLS server flight, a download cut at the connection's budget, an
// echo) and a short record after it have the shape of an inner handshake in any later flight. The
// frames net/http writes are never changed, so any HTTP/2 server reads the same requests.
package xhttp
