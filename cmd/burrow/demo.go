package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/client"
	"github.com/burrow-vpn/burrow/internal/coversite"
	"github.com/burrow-vpn/burrow/internal/links"
)

// Default proxy addresses of the demo (variables so tests can point them at
// ports they hold).
var (
	demoSOCKS = "127.0.0.1:1080"
	demoHTTP  = "127.0.0.1:8080"
)

// runDemo runs everything on loopback: a local cover site, a freshly
// initialised server, and a client with SOCKS5 and HTTP proxies; it proves
// the path with one fetch through each of the client's own proxies and keeps
// running until Ctrl-C. The client's listeners are bound before anything is
// announced; a default address another program holds is replaced by a free
// port (and the demo says so), an address given with --socks or --http is not.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	socks := fs.String("socks", demoSOCKS, "SOCKS5 proxy listen address (if the default is taken, a free port is used and printed)")
	httpAddr := fs.String("http", demoHTTP, "HTTP proxy listen address (if the default is taken, a free port is used and printed)")
	keep := fs.String("data", "", "server data dir to create (default: a temporary dir, removed on exit)")
	once := fs.Bool("once", false, "exit after the self-test instead of serving until Ctrl-C")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("demo: unexpected argument %q", pos[0])
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	site, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		return err
	}
	defer site.Close()

	data := *keep
	if data == "" {
		d, err := os.MkdirTemp("", "burrow-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		data = d + "/server"
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	var linkBuf strings.Builder
	err = serverInit([]string{"--data", data, "--listen", "127.0.0.1:" + port, "--cover", site.Addr,
		"--sni", "cover.test", "--public-addr", "127.0.0.1", "--allow-private-egress"}, &linkBuf, io.Discard)
	if err != nil {
		return err
	}
	link := strings.TrimSpace(strings.SplitN(linkBuf.String(), "\n", 2)[0])
	parsed, err := links.ParseVLESS(link)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	c, notes, err := demoClient(ctx, parsed, *socks, *httpAddr, explicit)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	errs := make(chan error, 2)
	wg.Go(func() { errs <- c.Run(ctx) })

	fmt.Fprintf(stderr, "demo: local cover site https://%s (name cover.test)\n", site.Addr)
	fmt.Fprintf(stderr, "demo: server data in %s, listening on 127.0.0.1:%s\n", data, port)
	fmt.Fprintf(stdout, "%s\n", link)
	for _, n := range notes {
		fmt.Fprintf(stderr, "demo: %s\n", n)
	}
	var proxies []string
	if a := c.SOCKSAddr(); a != nil {
		proxies = append(proxies, "socks5h://"+a.String())
		fmt.Fprintf(stderr, "demo: SOCKS5 proxy on %s\n", a)
	}
	if a := c.HTTPAddr(); a != nil {
		proxies = append(proxies, "http://"+a.String())
		fmt.Fprintf(stderr, "demo: HTTP proxy on %s\n", a)
	}

	wg.Go(func() { errs <- serverRun(ctx, []string{"--data", data}, io.Discard, stderr) })
	if err := waitListening(ctx, "127.0.0.1:"+port); err != nil {
		return fmt.Errorf("demo: server did not start: %w", err)
	}
	// Self-test: fetch the cover site's page through the tunnel, via each of
	// the proxies this client listens on (never an address someone else holds).
	for _, proxy := range proxies {
		body, err := fetchVia(ctx, proxy, "https://"+site.Addr+"/", site.Cert)
		if err != nil {
			return fmt.Errorf("demo: self-test fetch through %s and the tunnel failed: %w", proxy, err)
		}
		if !strings.Contains(body, "Northwind Ceramics") {
			return fmt.Errorf("demo: self-test fetch through %s returned the wrong page", proxy)
		}
	}
	fmt.Fprintf(stderr, "demo: self-test passed: fetched https://%s/ through %s → burrow server → site\n", site.Addr, strings.Join(proxies, " and "))
	if *once {
		return nil
	}
	fmt.Fprintf(stderr, "\nThe tunnel is up. Try:\n")
	for _, proxy := range proxies {
		fmt.Fprintf(stderr, "  curl -k -x %s https://%s/\n", proxy, site.Addr)
	}
	fmt.Fprintf(stderr, "Ctrl-C stops everything.\n")
	select {
	case <-ctx.Done():
		return nil
	case err := <-errs:
		return err
	}
}

// demoClient makes the demo's client, whose proxy listeners client.New binds.
// A default address (not given with a flag) that another program holds is
// replaced by a free port on the same host, with a note saying so.
func demoClient(ctx context.Context, link *links.VLESS, socks, httpAddr string, explicit map[string]bool) (*client.Client, []string, error) {
	var notes []string
	for {
		c, err := client.New(ctx, client.Config{Link: link, SOCKS: socks, HTTP: httpAddr})
		var le *client.ListenError
		if err == nil || !errors.As(err, &le) || !le.InUse() || explicit[le.Flag] {
			return c, notes, err
		}
		host, port, _ := net.SplitHostPort(le.Addr)
		if port == "0" {
			return nil, notes, err
		}
		free := net.JoinHostPort(host, "0")
		what := "SOCKS5"
		if le.Flag == "socks" {
			socks = free
		} else {
			what, httpAddr = "HTTP", free
		}
		notes = append(notes, fmt.Sprintf("%s is already in use by another program; the %s proxy takes a free port instead (--%s picks one)", le.Addr, what, le.Flag))
	}
}

// freePort returns a loopback TCP port that is free now, for a listener
// that a child process opens later. It picks from just below the system's
// ephemeral range, where neither outgoing connections nor other listeners
// on port 0 are given ports, so the port is still free when the child binds
// it (a port-0 pick could be taken by any of them in between).
func freePort() (string, error) {
	low := ephemeralLow()
	span := min(low-1024, 8192)
	for range 64 {
		p := strconv.Itoa(low - 1 - rand.IntN(span))
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", p)); err == nil {
			l.Close()
			return p, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p, nil
}

// ephemeralLow is the first port of the system's ephemeral range (Linux's
// ip_local_port_range; 32768, below the IANA range other systems use, when
// it cannot be read).
func ephemeralLow() int {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 2048 {
				return n
			}
		}
	}
	return 32768
}

func waitListening(ctx context.Context, addr string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fetchVia GETs target through proxy, trusting only cert.
func fetchVia(ctx context.Context, proxy, target string, cert *x509.Certificate) (string, error) {
	pu, err := url.Parse(proxy)
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tr := &http.Transport{
		Proxy:           http.ProxyURL(pu),
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "cover.test"},
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", target, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
