package xhttp

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// TestServerReset: a handler that closes after SetLinger(0) ends the
// session as a reset: the client reads every byte written before, then
// ErrReset (not EOF); the connection goes on carrying other sessions.
func TestServerReset(t *testing.T) {
	srv := startServer(t)
	var log connLog
	d := newDialer(t, DialerConfig{Dial: log.dial(srv.ln.Addr().String()), Host: "example.com", Budget: 64 << 10, MaxConns: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := d.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write([]byte{'R'})
	got, err := io.ReadAll(c)
	if string(got) != "reset" || !errors.Is(err, ErrReset) {
		t.Fatalf("read of a reset session = %q, %v; want \"reset\", %v", got, err, ErrReset)
	}

	e, err := d.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.SetDeadline(time.Now().Add(30 * time.Second))
	e.Write([]byte("Ehello"))
	e.(interface{ CloseWrite() error }).CloseWrite()
	if got, err := io.ReadAll(e); string(got) != "hello" || err != nil {
		t.Errorf("echo after a reset session = %q, %v; want \"hello\"", got, err)
	}
	if st := d.Stats(); st.Dialed != 1 {
		t.Errorf("the dialer opened %d connections; want 1: a reset session must not end its connection", st.Dialed)
	}
}
