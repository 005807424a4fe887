// Package mux implements Xray-core's mux.cool multiplexing, wire-compatible with Xray-core
// v1.260327.0 (common/mux, common/xudp): the server side (ServerMux), which serves the TCP
// and UDP sessions an Xray client with "mux" enabled sends, and the XUDP sessions it sends
// for UDP with Vision; and a client side (Client), which opens TCP and UDP streams over one
// connection. It runs on an already-authenticated VLESS CommandMux conn, dials targets
// through an injected function (where the egress policy lives), and imports nothing else
// of Burrow's.
//
// # Frame (both directions)
//
//	+----------+------------+--------+--------+-----------------------+----------+---------+
//	| meta len | session id | status | option | [network port atype   | [data len| data]   |
//	|  2 BE    |    2 BE    |   1    |   1    |  address [global id]] |  2 BE    |         |
//	+----------+------------+--------+--------+-----------------------+----------+---------+
//	            \___________________ meta len bytes (≤ 512) _________/   only if option&1
//
//	status   1 New, 2 Keep, 3 End, 4 KeepAlive
//	option   bit 0 (0x01) data follows, bit 1 (0x02) error (with End)
//	network  1 TCP, 2 UDP — present in New frames, and in Keep frames when the byte after
//	         the option is 2 (UDP): the datagram's destination (client → server) or
//	         source (server → client)
//	port     2 bytes BE, then atype 1 IPv4 (4 bytes), 2 domain (length byte + name),
//	         3 IPv6 (16 bytes) — the same "port then address" encoding as VLESS
//	global id 8 bytes after the address of an XUDP New frame with data (0 = none)
//
// # TCP sessions (an Xray client with "mux" enabled, every TCP connection)
//
//	New  : 00 LL | id | 01 | 00/01 | 01 port atype addr | [len | first bytes]
//	Keep : 00 04 | id | 02 | 01                         | len | bytes      (both ways)
//	End  : 00 04 | id | 03 | 00 or 02 (error)                              (both ways)
//
// Ids count up from 1 on each connection (0 is XUDP's). Stream data travels in Keep frames
// of at most 8184 bytes (Xray's writer splits at 8 KiB and its reader takes any length;
// 8184 makes two frames with their headers fill one 16 KiB TLS record exactly), several of
// them in one write: see Buffers. End ends the
// session in both directions: mux.cool has no half close (an Xray client forgets the
// session as it sends End, and answers any later Keep for it with End). The server sends
// End when the target's stream ends, End+error when the dial failed or was refused or the
// target failed; after a client End it delivers what the client sent before End, then
// closes the target. A Keep frame for an unknown session is answered with End. A New frame
// whose destination cannot be decoded (an unknown network or address type, a short
// address, a domain with characters Xray refuses, such as an IPv6 zone) is answered with
// End+error for its session only, and a UDP Keep frame with such a destination is dropped;
// only a frame that breaks the framing itself (metadata under 4 or over 512 bytes, an
// unknown status) ends the connection, where Xray ends it for all of these. KeepAlive
// frames are read and ignored (Xray sends none of its own and ignores them too). A
// connection without sessions, that opens none for a whole IdleConnCheck period (60 s), is
// ended, as Xray's server worker does.
//
// Flow control: none beyond TCP's, as in Xray. A server session buffers 8 frames (64 KiB)
// for its target, a Client stream about 1 MiB for its application; then the reader of the
// whole connection waits for the slow side, so one stalled target (or application) stalls
// every session of the connection until it drains, ends, or is idle for IdleTimeout. The
// server carries at most 128 sessions per connection; a New frame beyond that is answered
// with End+error (Xray sets no limit).
//
// # UDP sessions
//
// An XUDP client (Xray: common/xudp) sends, on session 0 of a VLESS conn with command 3:
//
//	New  : 00 LL | 00 00 | 01 | 01 | 02 port atype addr | global id (8) | len | datagram
//	Keep : 00 LL | 00 00 | 02 | 01 | 02 port atype addr                 | len | datagram
//
// A plain mux UDP session (an Xray client with "mux" and UDP, or Client) is a New frame with
// network 2 and Keep frames with or without an address. This server answers each datagram
// from a destination with
//
//	Keep : 00 LL | id    | 02 | 01 | 02 port atype source-address      | len | datagram
//
// drops datagrams over 8 KiB (Xray's reader breaks the whole connection on one), and ends an
// idle session with an End frame (00 04 | id | 03 | 00). XUDP's global id (moving a
// session between connections) is read but not used.
//
// # Buffers
//
// Stream data passes through pooled buffers (8 KiB and 64 KiB) that return to their pool
// once written or read, so an idle session holds none: 500 idle TCP sessions cost 4 to
// 6 KiB of heap each, Client, ServerMux and target conn together (TestIdleSessionMemory).
//
// The server reads up to 32 KiB from a target, lays it out as up to 4 Keep frames in the
// same buffer, and sends them with one write on the mux conn. Between reads it waits for
// the target's socket to become readable without a buffer (a non-blocking MSG_PEEK
// through the runtime's poller, for the stdlib's TCP and UDP conns on Unix; other conns
// are read with a buffer at once). Per TCP session it runs two goroutines (upload and
// download), per UDP session one plus one per destination.
//
// A Client runs a reader and a writer per connection and none per stream. The reader reads
// through a 64 KiB buffer and hands a stream the Keep frames for it that are already
// buffered as one chunk; the writer gathers frames queued by several streams into one
// write. A stream's Write hands over up to 8 frames (64 KiB) at once.
//
// # Using Client in burrow connect
//
// internal/client (muxpool.go, lazy.go) opens a VLESS conn with CommandMux under Vision,
// wraps it with NewClient, and sends each plain-text TCP stream of a link with tcpmux=1 as
// a session with DialData (the application's first bytes in the New frame), opening another
// connection when every open one carries 32 streams and closing one idle for 30 s. TCP
// streams work against Burrow servers only: Xray's servers carry TCP inside mux neither for
// Vision users on plain REALITY nor over XHTTP (Xray-core #4128).
package mux
