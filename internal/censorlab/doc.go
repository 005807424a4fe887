// Package censorlab is Burrow's censor lab: simulated national DPI
// middleboxes on a userspace network path, known-blockable baseline
// proxies, a workload, and the runner behind `burrow lab` and the CI rule.
// Its active prober is also `burrow check`'s audit.
//
// The path. Everything runs in one process on loopback, without root (Linux
// routes all of 127.0.0.0/8 to lo, so each party has its own address):
//
//	client 127.0.0.1 ──► Censor relay 127.0.0.1:p ──► server 127.0.2.x   (ServerNet: a foreign data centre)
//	                         │                           └─► site 127.0.3.1 (the workload's destination)
//	                         │ every byte, both directions, reassembled
//	                         ▼
//	                     middleboxes ── verdicts: pass, freeze (silence), reset
//	                         │
//	                         └── block-list (server IPs; client→server pairs)
//	prober ──────────────────────────────────► server and cover 127.0.1.1 (CoverNet), compared
//
// Burrow's direct systems take as cover a neighbour: another real site in the
// servers' own network (127.0.2.250, NeighborSNI), as `burrow server
// find-cover` finds one for a real server, so the censor's SNI↔network
// check places their name where the server is. The relay systems' entry
// relays use the cover in CoverNet, the whitelisted network.
//
// The Censor is a TCP and UDP relay: Censor.ExposeTCP(server) returns the
// address a client dials instead of the server. Each direction of a TCP
// connection is read from the kernel's socket — already reassembled — and
// shown to every Middlebox together with everything that direction carried
// before (Flow.Seen), so splitting a ClientHello over segments or records
// does not hide it. UDP flows are per client address, one datagram at a time.
//
// Middleboxes, each small and tested alone:
//
//	signatures       WireGuard initiation (01 00 00 00, 148 bytes), OpenVPN hard reset over UDP and
//	                 TCP (opcode 7 or 10 << 3), SOCKS4/5, HTTP CONNECT and absolute-URI requests
//	fully-encrypted  the GFW's 2023 rule: first packet exempt only by Ex1..Ex5 (see Exemption)
//	clienthello      SNI block-list, whitelist mode (SNI × network, rule "sni-whitelist"), JA4 allow-list
//	sni-ip           a known site's SNI towards an address outside that site's networks
//	prober           replay, random bytes, TLS with two SNIs, HTTP — compared with the cover site, N tries each
//	tls-in-tls       record sizes of an inner TLS handshake anywhere in an outer TLS connection
//	byte-budget      freeze after 16 KiB server→client to a suspicious network, no RST
//	conn-count       more than N concurrent connections client→server blocks the pair
//	conn-rate        too many new connections or TLS handshakes per pair or per client in a window
//	ip-blocklist     known endpoints; the dynamic list (prober, conn-count) is always enforced
//
// Baselines (tiny real client/server pairs, see Baselines) must be caught:
// a plain Go crypto/tls proxy, a Shadowsocks-like random stream, a
// WireGuard-shaped UDP tunnel, OpenVPN-shaped TCP, plain SOCKS5 and plain HTTP
// CONNECT. Benign controls (Controls) browse the cover's site like headless
// Chromium with no tunnel; a rule that flags one is not usable by a censor.
// Burrow's own transports live in censorlab/tunnels, so this package depends
// only on internal/tlshello (fingerprints), internal/camo (the cover check
// and the browser ClientHello) and internal/coversite.
//
// A cell is one system through one Scenario: a fresh Censor, the Workload (4
// MiB down, 256 KiB up, 50 request/answer exchanges, six connections open at
// once, each carrying its own inner TLS to the site, every byte checked), and
// a Result: detected by which rule, blocked, bytes delivered of expected,
// connections, time, expected-fail (its rules and byte floor) and why. Check
// applies the CI rule to a table.
//
// What it does not do: real packets (no IP/TCP headers, no TTL or window
// tricks, no packet-level timing), QUIC, or probabilistic blocking — the GFW
// blocks ~26% of fully-encrypted flows, the lab all of them, so the table is
// deterministic.
package censorlab
