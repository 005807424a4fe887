// Package mux implements the server side of Xray-core's mux.cool multiplexing as Xray clients
// use it for UDP over VLESS: XUDP (the default packet encoding of Xray clients with the Vision
// flow, and with "cone" UDP) and plain mux UDP sessions. It runs on an already-authenticated
// VLESS CommandMux conn, dials UDP destinations through an injected function (where the
// egress policy lives), and imports nothing else of Burrow's. TCP sessions inside mux and
// the client side are not implemented.
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
// An XUDP client (Xray: common/xudp) sends, on session 0 of a VLESS conn with command 3:
//
//	New  : 00 LL | 00 00 | 01 | 01 | 02 port atype addr | global id (8) | len | datagram
//	Keep : 00 LL | 00 00 | 02 | 01 | 02 port atype addr                 | len | datagram
//
// and this server answers each datagram from a destination with
//
//	Keep : 00 LL | id    | 02 | 01 | 02 port atype source-address      | len | datagram
//
// and ends an idle session with an End frame (00 04 | id | 03 | 00).
package mux
