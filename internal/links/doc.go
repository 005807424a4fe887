// Package links reads and writes the share links that carry a Burrow (or
// Xray-core) server's address and one user's key from the operator to the
// user's phone or computer, and draws them as QR codes.
//
// The only format so far is Xray's de-facto VLESS link for REALITY over TCP,
// which v2rayN, v2rayNG, Hiddify, Streisand, Happ and NekoBox import:
//
//	vless://UUID@HOST:PORT?encryption=none&security=reality&sni=SNI&fp=FP&pbk=PBK&sid=SID&spx=SPX&flow=FLOW&type=tcp#NAME
//	        └ 8-4-4-4-12 hex user id (the credential)
//	             └ domain, IPv4, or [IPv6] in brackets; port 1..65535
//	   encryption  "none" (or absent): VLESS-level encryption is not supported
//	   security    "reality" (required)
//	   sni         server name in the ClientHello: a domain the cover site serves (required)
//	   fp          browser fingerprint for the ClientHello: chrome, firefox, safari, ios,
//	               android, edge, 360, qq, random, randomized, randomizednoalpn, or one of
//	               Xray-core's hello… names (Fingerprints); each stands for the closest
//	               browser Burrow ships (FingerprintBrowser); anything else, and Xray's
//	               "unsafe" and "hellogolang" (Go's own hello), is refused (optional)
//	   pbk         server's X25519 public key, 32 bytes as 43 characters of
//	               unpadded base64url, as `xray x25519` prints it (required)
//	   sid         short id, 0..16 hex digits, even count (optional)
//	   spx         spiderX: first path a client's crawler visits, starts with "/" (optional)
//	   flow        "xtls-rprx-vision" or absent
//	   type        "tcp" (default) or "raw", Xray's newer name for it, or "xhttp", with:
//	     path      request path prefix, starts with "/" (optional)
//	     host      :authority of the requests; default the SNI (optional)
//	     mode      auto, packet-up, stream-up or stream-one (optional)
//	     extra     Xray's extra settings, a JSON object, kept as given (optional)
//	     budget    Burrow only: bytes a TCP connection may carry towards the client
//	               before the client rotates to a fresh one, 4096..16777216; 0 or
//	               absent = no rotation. Other clients ignore it.
//	             flow must be absent with xhttp.
//	   tcpmux    Burrow only: "1" = the server carries TCP streams inside mux.cool on a
//	             Vision connection, so Burrow's client sends plain-text streams as
//	             sessions of an open connection (type=tcp with Vision only). Other
//	             clients ignore it.
//	   NAME        percent-encoded UTF-8 display name (optional)
//
// Other query parameters (headerType=none, serviceName, pqv, …) are kept in
// VLESS.Extra and written back, sorted by key. Parameters that would change
// the wire format we speak are refused with an error naming the part.
//
// A link is a credential: errors never repeat its UUID or short id; use
// VLESS.Redacted to log one.
//
// This package imports nothing else of Burrow's.
package links
