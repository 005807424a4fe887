package mux

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
)

// failingConn is a net.Conn whose Read fails with err once fail is closed.
type failingConn struct {
	net.Conn
	fail chan struct{}
	err  error
}

func (c *failingConn) Read(p []byte) (int, error) {
	<-c.fail
	return 0, c.err
}

// TestStreamsGetConnectionError: when the connection under the mux fails, its streams' Read
// returns an error that is ErrSessionFailed and also carries the connection's own error (a
// server's refusal of the VLESS request says there why the user is cut off).
func TestStreamsGetConnectionError(t *testing.T) {
	cc, sc := net.Pipe()
	defer sc.Close()
	go io.Copy(io.Discard, sc)
	why := errors.New("server refused the connection: quota used up")
	fc := &failingConn{Conn: cc, fail: make(chan struct{}), err: why}
	c := NewClient(fc)
	defer c.Close()
	st, err := c.Dial(context.Background(), "tcp", "example.com:80")
	if err != nil {
		t.Fatal(err)
	}
	close(fc.fail)
	_, err = st.Read(make([]byte, 1))
	if !errors.Is(err, ErrSessionFailed) || !errors.Is(err, why) {
		t.Errorf("Read after the connection failed = %v, want ErrSessionFailed wrapping %q", err, why)
	}
}
