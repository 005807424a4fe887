package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/coversite"
)

// runDemo runs everything on loopback: a local cover site, a freshly
// initialised server, and a client with SOCKS5 and HTTP proxies; it proves
// the path with one fetch through the tunnel and keeps running until Ctrl-C.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	socks := fs.String("socks", "127.0.0.1:1080", "SOCKS5 proxy listen address")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP proxy listen address")
	keep := fs.String("data", "", "server data dir to create (default: a temporary dir, removed on exit)")
	once := fs.Bool("once", false, "exit after the self-test instead of serving until Ctrl-C")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("demo: unexpected argument %q", pos[0])
	}
	site, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		return err
	}
	defer site.Close()
	fmt.Fprintf(stderr, "demo: local cover site https://%s (name cover.test)\n", site.Addr)

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
	fmt.Fprintf(stderr, "demo: server data in %s, listening on 127.0.0.1:%s\n", data, port)
	fmt.Fprintf(stdout, "%s\n", link)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- serverRun(ctx, []string{"--data", data}, io.Discard, stderr) }()
	if err := waitListening(ctx, "127.0.0.1:"+port); err != nil {
		cancel()
		wg.Wait()
		return fmt.Errorf("demo: server did not start: %w", err)
	}
	go func() {
		defer wg.Done()
		errs <- runConnect(ctx, []string{link, "--socks", *socks, "--http", *httpAddr}, io.Discard, io.Discard)
	}()
	defer wg.Wait()
	defer cancel()

	// Self-test: fetch the cover site's page through the tunnel, via the SOCKS5 proxy.
	if err := waitListening(ctx, *socks); err != nil {
		return fmt.Errorf("demo: client did not start: %w", <-errs)
	}
	body, err := fetchVia(ctx, "socks5h://"+*socks, "https://"+site.Addr+"/", site.Cert)
	if err != nil {
		return fmt.Errorf("demo: self-test fetch through the tunnel failed: %w", err)
	}
	if !strings.Contains(body, "Northwind Ceramics") {
		return errors.New("demo: self-test fetch returned the wrong page")
	}
	fmt.Fprintf(stderr, "demo: self-test passed: fetched https://%s/ through SOCKS5 → burrow server → site\n", site.Addr)
	if *once {
		return nil
	}
	fmt.Fprintf(stderr, "\nThe tunnel is up. Try:\n  curl -k -x socks5h://%s https://%s/\n  curl -k -x http://%s https://%s/about\nCtrl-C stops everything.\n", *socks, site.Addr, *httpAddr, site.Addr)
	select {
	case <-ctx.Done():
		return nil
	case err := <-errs:
		return err
	}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p, nil
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
