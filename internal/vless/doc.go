// Package vless implements the VLESS protocol as Xray-core (v1.260327.0) speaks it: the request
// and response headers, UDP datagram framing, and the XTLS Vision flow (padding of the first
// packets, and the switch to copying the inner TLS records directly on the raw TCP conn).
//
// It works on a net.Conn that is already the outer TLS conn (REALITY server or client); it
// does not authenticate users (the caller checks Request.UUID), dial targets, or multiplex
// (see internal/mux). It imports nothing else of Burrow's and none of the TLS libraries.
//
// # Request (client → server, once, before the payload)
//
//	+-----+--------+-------+---------+-----+------+-------+---------+
//	| ver |  UUID  | alen  | addons  | cmd | port | atype | address |
//	+-----+--------+-------+---------+-----+------+-------+---------+
//	|  0  |   16   |   1   | alen    |  1  | 2 BE |   1   |   var   |
//	+-----+--------+-------+---------+-----+------+-------+---------+
//
//	ver    0
//	addons protobuf Addons{string Flow = 1; bytes Seed = 2}; Xray sends alen=0 for no flow,
//	       or 0x12 0x0a 0x10 "xtls-rprx-vision" for Vision
//	cmd    1 TCP, 2 UDP, 3 Mux (mux.cool; port, atype and address are absent)
//	atype  1 IPv4 (4 bytes), 2 domain (1 length byte + name), 3 IPv6 (16 bytes)
//	       — VLESS's numbering, not SOCKS5's
//
// # Response (server → client, once, before the payload)
//
//	+-----+------+--------+
//	| ver | alen | addons |      Xray sends 0x00 0x00
//	+-----+------+--------+
//
// Both headers travel in the same TLS write as the first payload (or the first Vision block).
//
// # UDP (cmd 2), both directions, after the headers
//
//	+--------+---------+--------+---------+---
//	| len BE | payload | len BE | payload | ...   one datagram per length prefix
//	+--------+---------+--------+---------+---
//
// Xray clients send UDP with Vision as cmd 3 + XUDP instead (internal/mux); Xray servers
// refuse Vision with cmd 2, so ClientConn sends cmd 2 without a flow.
//
// # Vision (flow "xtls-rprx-vision", cmd 1 or 3), each direction independently
//
// The first packets of each direction are padded blocks; the first block is preceded by the
// request's UUID (in both directions):
//
//	+------+-----+-------------+-------------+---------+---------+---
//	| UUID | cmd | content len | padding len | content | padding | cmd ...
//	+------+-----+-------------+-------------+---------+---------+---
//	|  16  |  1  |    2 BE     |    2 BE     |   var   |   var   |
//	  first block only
//
//	cmd 0 continue: another block follows
//	cmd 1 end:      padding ends; the rest of the stream is plain, inside the outer TLS
//	cmd 2 direct:   padding ends; the rest is written on the raw TCP conn under the outer TLS,
//	                which is possible because the inner traffic is itself TLS 1.3 records
//
// The writer pads each ≤8 KiB piece of a write with random lengths: while the inner conn is
// in its TLS handshake (or for the empty block a client sends when it has no payload to hide
// its header behind) content shorter than 900 bytes is padded to 900–1399 bytes, otherwise
// 0–255 bytes are added; content+padding never exceed 8171. Burrow's client alone pads the block
// that ends padding to 3200–4699 bytes (5572–7071 in its first two writes; endPadMin in
// vision.go says why): above any ClientHello, so no flight of the connection reads as an inner
// hello. Xray's readers take any padding length. A filter watches the first eight
// pieces of each direction (shared state): an inner ClientHello or ServerHello marks the
// traffic as TLS; a ServerHello with supported_versions=TLS 1.3 and a cipher other than
// AES_128_CCM_8 enables direct copy. The writer ends padding at the first write made only of
// complete TLS application-data records (cmd 2 if direct is enabled, else 1), or, for traffic
// not recognised as TLS 1.2+, once the filter has looked at its packets (cmd 1). A writer
// that sent cmd 2 writes everything after it on the raw conn; a reader that receives cmd 2
// delivers what the outer TLS conn had buffered (plaintext and undecrypted raw bytes) and
// then reads the raw conn. Conn.WriteTo and Conn.ReadFrom then hand the raw *net.TCPConn to
// io.Copy's splice path.
//
// Vision needs the raw conn and the TLS conn's read buffers, which crypto/tls, utls and
// REALITY do not expose; see tlsInternals for how they are reached (by field name, checked)
// and docs/internals.md.
package vless
