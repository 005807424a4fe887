// Package interop holds Burrow's wire-compatibility tests against Xray-core.
//
// It is a separate Go module so that Xray-core (and everything it pulls in)
// never becomes a dependency of Burrow itself. The package has no non-test
// code besides this comment: everything lives in _test.go files.
//
// What runs, all on loopback (127.0.0.1), in one test process:
//
//	cover site  : TLS 1.3 server, self-signed ECDSA certificate, X25519 only,
//	              serving a small HTML page. It is the REALITY "target".
//	content site: plain HTTP and HTTPS servers that serve N MiB of
//	              deterministic bytes; the test checks the SHA-256 of what
//	              arrives through the tunnel.
//	udp echo    : a UDP socket that answers every datagram with its reverse.
//	xray-core   : started in-process from a JSON config string
//	              (core + infra/conf + main/distro/all).
//	burrow      : the CLI binary, built once by TestMain from ../cmd/burrow
//	              and run as a subprocess.
//
// Pairings tested:
//
//	Xray client  --REALITY+Vision-->  Xray server   (proves the harness)
//	Xray client  --REALITY+Vision-->  burrow server (configured from burrow's vless:// link)
//	burrow client --REALITY+Vision--> Xray server   (link built from Xray's parameters)
//	TLS prober   --SNI cover.test-->  burrow server, Xray server: both must show
//	                                  the cover's own certificate and page.
package interop
