package main

import (
	"context"
	"fmt"
	"io"

	"github.com/burrow-vpn/burrow/internal/coversite"
)

// runCover is `burrow cover`: a stand-in HTTPS cover site (internal/coversite:
// TLS 1.3 with X25519, its own self-signed certificate for the --sni names,
// a few ordinary pages and 404s), for trying a real server without pointing
// it at someone else's site. It serves until Ctrl-C.
func runCover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("cover", stderr)
	listen := fs.String("listen", "127.0.0.1:8443", "TCP address to serve HTTPS on")
	sni := fs.String("sni", "cover.test", "server name(s) its certificate holds, comma-separated")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("cover: unexpected argument %q", pos[0])
	}
	names := splitList(*sni)
	if len(names) == 0 {
		return fmt.Errorf("cover: --sni: want at least one name")
	}
	site, err := coversite.Start(*listen, names...)
	if err != nil {
		return fmt.Errorf("cover: %w", err)
	}
	defer site.Close()
	fmt.Fprintf(stdout, "cover site on https://%s (certificate for %s, self-signed)\n", site.Addr, names[0])
	fmt.Fprintf(stderr, "Use it with: burrow server init --cover %s --sni %s ...\nCtrl-C stops it.\n", site.Addr, names[0])
	<-ctx.Done()
	return nil
}
