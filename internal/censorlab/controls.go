package censorlab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	utls "github.com/refraction-networking/utls"

	"github.com/burrow-vpn/burrow/internal/camo"
)

// The benign controls: ordinary browsing with no tunnel, shaped like
// headless Chromium 156 visiting the cover's site (another instance of it,
// same certificate and pages, on the cover's own network) — the exact ClientHello Burrow imitates (camo's Chromium 156 spec,
// JA4 t13d1517h2_…), HTTP/2 with Chrome's request headers and one
// connection per origin reused across pages, a second connection for
// credential-less fetches (fonts), and a WebSocket on its own HTTP/1.1
// connection. Every detector of every scenario runs on them: a rule that
// flags one would block ordinary browsing, so a censor cannot use it, and
// the lab's CI rule fails. Calibrate rules on these, never on Burrow.

// Controls returns the benign controls.
func Controls() []System {
	return []System{
		{Name: "chrome-pages", Control: true, Network: "tcp", Start: startControl(browsePages)},
		{Name: "chrome-media", Control: true, Network: "tcp", Start: startControl(browseMedia)},
	}
}

// chromeUA is Chromium 156's user agent.
const chromeUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"

// browsingHandler is what the lab's cover serves besides its own pages,
// for the controls to browse: a path ending in "-N" serves N bytes of the
// stream named by the path; /ws is a WebSocket echo (HTTP/1.1 upgrade).
func browsingHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", serveWebSocket)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		i := strings.LastIndexByte(r.URL.Path, '-')
		if i < 0 {
			http.NotFound(w, r)
			return
		}
		n, err := strconv.ParseInt(r.URL.Path[i+1:], 10, 64)
		if err != nil || n < 0 || n > 64<<20 {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.Header().Set("Cache-Control", "max-age=3600")
		io.Copy(w, io.LimitReader(newStream(r.URL.Path), n))
	})
	return mux
}

// startControl returns a System.Start that serves the browsing site at the
// control's address and browses it with browse.
func startControl(browse func(ctx context.Context, b *browser) error) func(ctx context.Context, env Env) (*Instance, error) {
	return func(ctx context.Context, env Env) (*Instance, error) {
		addr, stop, err := env.CoverSite(env.IP)
		if err != nil {
			return nil, err
		}
		return &Instance{Server: addr, Close: stop,
			Run: func(ctx context.Context, via netip.AddrPort) Tally {
				ctx, cancel := context.WithTimeout(ctx, Budget(time.Minute))
				defer cancel()
				b := &browser{via: via, dial: env.ClientDial, idle: Budget(5 * time.Second)}
				defer b.close()
				err := browse(ctx, b)
				t := Tally{Expected: b.expected.Load(), Delivered: b.delivered.Load()}
				if err != nil {
					t.Errors = append(t.Errors, err.Error())
				}
				return t
			}}, nil
	}
}

// browser is one headless Chromium's network stack towards one origin: a
// pool of one HTTP/2 connection for credentialed requests and one for
// credential-less ones, as Chrome keeps them.
type browser struct {
	via  netip.AddrPort
	dial DialFunc
	idle time.Duration

	once                sync.Once
	main, anon          *http.Transport
	expected, delivered atomic.Int64
}

func (b *browser) transports() (*http.Transport, *http.Transport) {
	b.once.Do(func() {
		// HTTP/2 with prior knowledge over a connection dialTLS has already
		// secured with Chromium's hello (ALPN h2): net/http's HTTP/2 takes
		// the uTLS connection as it is.
		var h2 http.Protocols
		h2.SetUnencryptedHTTP2(true)
		dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
			return b.dialTLS(ctx, false)
		}
		b.main = &http.Transport{Protocols: &h2, DialContext: dial}
		b.anon = &http.Transport{Protocols: &h2, DialContext: dial}
	})
	return b.main, b.anon
}

func (b *browser) close() {
	if b.main != nil {
		b.main.CloseIdleConnections()
		b.anon.CloseIdleConnections()
	}
}

// dialTLS opens TCP through the censor and shakes hands with Chromium 156's
// ClientHello; a WebSocket's connection offers only http/1.1, as Chrome's do.
func (b *browser) dialTLS(ctx context.Context, websocket bool) (net.Conn, error) {
	raw, err := b.dial(ctx, "tcp", b.via.String())
	if err != nil {
		return nil, err
	}
	spec, err := camo.BrowserHelloSpec(camo.FingerprintChrome)
	if err != nil {
		raw.Close()
		return nil, err
	}
	if websocket {
		exts := spec.Extensions[:0]
		for _, e := range spec.Extensions {
			switch e := e.(type) {
			case *utls.ALPNExtension:
				e.AlpnProtocols = []string{"http/1.1"}
			case *utls.ApplicationSettingsExtensionNew:
				continue // ALPS only rides with h2
			}
			exts = append(exts, e)
		}
		spec.Extensions = exts
	}
	// The lab's own certificate; every byte is checked end to end instead.
	uc := utls.UClient(&idleConn{Conn: raw, idle: b.idle}, &utls.Config{ServerName: CoverSNI, InsecureSkipVerify: true}, utls.HelloCustom)
	if err := uc.ApplyPreset(spec); err != nil {
		raw.Close()
		return nil, err
	}
	if err := uc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	if websocket {
		return uc, nil
	}
	return &browserWrites{Conn: uc}, nil
}

// browserWrites gives Go's HTTP/2 client a browser's record sizes where
// they differ: Go writes the connection's and the stream's WINDOW_UPDATE
// (and other control frames) together, one 43-byte record, where Chromium
// sends each frame in a record of its own (30 bytes for a WINDOW_UPDATE).
// A write made only of two or more control frames goes out one frame per
// record; every other write is untouched.
type browserWrites struct{ net.Conn }

func (c *browserWrites) Write(p []byte) (int, error) {
	frames := controlFrames(p)
	if len(frames) < 2 {
		return c.Conn.Write(p)
	}
	n := 0
	for _, f := range frames {
		k, err := c.Conn.Write(f)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// controlFrames splits p into HTTP/2 frames if p is whole frames, each a
// PRIORITY, RST_STREAM, SETTINGS, PING or WINDOW_UPDATE; else nil.
func controlFrames(p []byte) [][]byte {
	var out [][]byte
	for len(p) > 0 {
		if len(p) < 9 {
			return nil
		}
		n := 9 + (int(p[0])<<16 | int(p[1])<<8 | int(p[2]))
		switch p[3] {
		case 0x2, 0x3, 0x4, 0x6, 0x8:
		default:
			return nil
		}
		if n > len(p) {
			return nil
		}
		out = append(out, p[:n])
		p = p[n:]
	}
	return out
}

// get fetches path, whose name ends in its size, as Chrome would (dest is
// its Sec-Fetch-Dest), and checks every byte.
func (b *browser) get(ctx context.Context, anon bool, dest, path string) error {
	main, other := b.transports()
	rt := main
	if anon {
		rt = other
	}
	size := sizeOf(path)
	// The scheme picks net/http's HTTP/2 with prior knowledge (above);
	// the connection is TLS all the same.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+CoverSNI+path, nil)
	if err != nil {
		return err
	}
	chromeHeaders(req.Header, dest, anon)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	var got atomic.Int64
	_, err = io.Copy(&verifier{want: newStream(path), n: &got}, resp.Body)
	b.delivered.Add(got.Load())
	if err == nil && got.Load() != size {
		err = fmt.Errorf("GET %s: %d of %d bytes", path, got.Load(), size)
	}
	return err
}

// chromeHeaders sets the request headers Chromium 156 sends for dest.
func chromeHeaders(h http.Header, dest string, anon bool) {
	h.Set("sec-ch-ua", `"Chromium";v="156", "Not/A)Brand";v="24"`)
	h.Set("sec-ch-ua-mobile", "?0")
	h.Set("sec-ch-ua-platform", `"Linux"`)
	h.Set("user-agent", chromeUA)
	h.Set("accept-encoding", "gzip, deflate, br, zstd")
	h.Set("accept-language", "en-US,en;q=0.9")
	h.Set("sec-fetch-dest", dest)
	h.Set("sec-fetch-site", "same-origin")
	switch dest {
	case "document":
		h.Set("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8")
		h.Set("upgrade-insecure-requests", "1")
		h.Set("sec-fetch-mode", "navigate")
		h.Set("sec-fetch-user", "?1")
		h.Set("priority", "u=0, i")
	case "image":
		h.Set("accept", "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8")
		h.Set("sec-fetch-mode", "no-cors")
		h.Set("priority", "i")
	default:
		h.Set("accept", "*/*")
		h.Set("sec-fetch-mode", "no-cors")
		h.Set("priority", "u=1")
	}
	if anon {
		h.Set("sec-fetch-mode", "cors")
		h.Set("origin", "https://"+CoverSNI)
	} else {
		h.Set("cookie", "_ga=GA1.1.1843922764.1764956801; session=8f14e45fceea167a5a36dedd4bea2543; consent=analytics%3D0%26ads%3D0; _ga_Q3X9=GS2.1.s1764956801$o1$g1$t1764957120$j60$l0$h0")
		if dest != "document" {
			h.Set("referer", "https://"+CoverSNI+"/")
		}
	}
}

// fetchAll gets every path at once (a browser's parallel requests) and
// returns the first error.
func (b *browser) fetchAll(ctx context.Context, anon bool, dest string, paths []string) error {
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Go(func() { errs[i] = b.get(ctx, anon, dest, p) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// pagePlan is one page load: the document, then stylesheets and scripts,
// then images, fonts (credential-less) and beacons at once.
type pagePlan struct {
	doc                       string
	scripts, imgs, fonts, xhr []string
}

// planPages returns n pages with sizes drawn like a news or shop page's.
func planPages(n int) []pagePlan {
	rng := mrand.New(mrand.NewPCG(1, 2))
	size := func(lo, hi int) int { return lo + rng.IntN(hi-lo) }
	var pages []pagePlan
	for page := range n {
		p := pagePlan{doc: fmt.Sprintf("/page/%d-%d", page, size(30<<10, 90<<10))}
		for i := range 10 {
			kind := "css"
			if i >= 4 {
				kind = "js"
			}
			p.scripts = append(p.scripts, fmt.Sprintf("/static/%s/%d-%d-%d", kind, page, i, size(5<<10, 120<<10)))
		}
		for i := range 24 {
			p.imgs = append(p.imgs, fmt.Sprintf("/img/%d-%d-%d", page, i, size(2<<10, 120<<10)))
		}
		for i := range 2 {
			p.fonts = append(p.fonts, fmt.Sprintf("/fonts/%d-%d", i, size(20<<10, 40<<10)))
		}
		for i := range 3 {
			p.xhr = append(p.xhr, fmt.Sprintf("/api/beacon/%d-%d-%d", page, i, size(100, 2000)))
		}
		pages = append(pages, p)
	}
	return pages
}

// sizeOf returns the size a path names.
func sizeOf(path string) int64 {
	n, _ := strconv.ParseInt(path[strings.LastIndexByte(path, '-')+1:], 10, 64)
	return n
}

// browsePages loads three pages while a WebSocket exchanges chat-sized
// messages with the origin.
func browsePages(ctx context.Context, b *browser) error {
	pages := planPages(3)
	msgs := wsMessages(60)
	for _, p := range pages {
		for _, path := range append(append(append(append([]string{p.doc}, p.scripts...), p.imgs...), p.fonts...), p.xhr...) {
			b.expected.Add(sizeOf(path))
		}
	}
	for _, m := range msgs {
		b.expected.Add(2 * int64(len(m)))
	}
	var wg sync.WaitGroup
	var wsErr error
	wg.Go(func() { wsErr = b.websocket(ctx, msgs) })
	var err error
	for _, p := range pages {
		if err = b.get(ctx, false, "document", p.doc); err != nil {
			break
		}
		if err = b.fetchAll(ctx, false, "script", p.scripts); err != nil {
			break
		}
		var parts sync.WaitGroup
		var e1, e2, e3 error
		parts.Go(func() { e1 = b.fetchAll(ctx, false, "image", p.imgs) })
		parts.Go(func() { e2 = b.fetchAll(ctx, true, "font", p.fonts) })
		parts.Go(func() { e3 = b.fetchAll(ctx, false, "empty", p.xhr) })
		parts.Wait()
		if err = errors.Join(e1, e2, e3); err != nil {
			break
		}
	}
	wg.Wait()
	return errors.Join(err, wsErr)
}

// browseMedia opens a player page, then downloads a 4 MiB file while a
// video plays: sixteen 256 KiB segments fetched one after the other.
func browseMedia(ctx context.Context, b *browser) error {
	b.expected.Add(48213 + 4194304 + 16*262144)
	if err := b.get(ctx, false, "document", "/watch/player-48213"); err != nil {
		return err
	}
	var wg sync.WaitGroup
	var dlErr error
	wg.Go(func() { dlErr = b.get(ctx, false, "empty", "/download/archive-4194304") })
	var err error
	for i := range 16 {
		if err = b.get(ctx, false, "video", fmt.Sprintf("/video/seg-%d-262144", i)); err != nil {
			break
		}
	}
	wg.Wait()
	return errors.Join(err, dlErr)
}

// wsMessages returns n chat-sized messages.
func wsMessages(n int) [][]byte {
	rng := mrand.New(mrand.NewPCG(3, 4))
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = make([]byte, 40+rng.IntN(300))
		for j := range msgs[i] {
			msgs[i][j] = byte(rng.Uint32())
		}
	}
	return msgs
}

// websocket opens a WebSocket on its own connection and sends msgs one by
// one, each echoed by the site and checked.
func (b *browser) websocket(ctx context.Context, msgs [][]byte) error {
	c, err := b.dialTLS(ctx, true)
	if err != nil {
		return fmt.Errorf("websocket: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	key := make([]byte, 16)
	rand.Read(key)
	rw := bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c))
	if err := wsUpgrade(rw, CoverSNI, base64.StdEncoding.EncodeToString(key)); err != nil {
		return err
	}
	mask := make([]byte, 4)
	for _, msg := range msgs {
		rand.Read(mask)
		if err := wsWrite(c, msg, mask); err != nil {
			return fmt.Errorf("websocket: %w", err)
		}
		got, err := wsRead(rw)
		if err != nil {
			return fmt.Errorf("websocket: %w", err)
		}
		if string(got) != string(msg) {
			return errors.New("websocket: wrong echo")
		}
		b.delivered.Add(2 * int64(len(msg)))
	}
	return nil
}
