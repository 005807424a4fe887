package client

import (
	"net"
	"strings"
	"testing"
)

// A taken port gets the friendly message on every platform (Winsock's
// WSAEADDRINUSE is not syscall.EADDRINUSE on Windows).
func TestListenErrorPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = net.Listen("tcp", l.Addr().String())
	if err == nil {
		t.Fatal("second listen on the same port succeeded")
	}
	got := listenError("socks", l.Addr().String(), err).Error()
	if !strings.Contains(got, "already in use") {
		t.Errorf("listenError(socks, %s, %v) = %q, want it to say the port is already in use", l.Addr(), err, got)
	}
}
