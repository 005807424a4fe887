package socks5

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// Reply is a SOCKS5 reply code (RFC 1928 §6).
type Reply byte

// Reply codes.
const (
	ReplySucceeded            Reply = 0x00
	ReplyGeneralFailure       Reply = 0x01
	ReplyNotAllowed           Reply = 0x02 // connection not allowed by ruleset
	ReplyNetworkUnreachable   Reply = 0x03
	ReplyHostUnreachable      Reply = 0x04
	ReplyConnectionRefused    Reply = 0x05
	ReplyTTLExpired           Reply = 0x06
	ReplyCommandNotSupported  Reply = 0x07
	ReplyAddrTypeNotSupported Reply = 0x08
)

var replyText = [...]string{
	ReplySucceeded:            "succeeded",
	ReplyGeneralFailure:       "general SOCKS server failure",
	ReplyNotAllowed:           "connection not allowed by ruleset",
	ReplyNetworkUnreachable:   "network unreachable",
	ReplyHostUnreachable:      "host unreachable",
	ReplyConnectionRefused:    "connection refused",
	ReplyTTLExpired:           "TTL expired",
	ReplyCommandNotSupported:  "command not supported",
	ReplyAddrTypeNotSupported: "address type not supported",
}

func (r Reply) String() string {
	if int(r) < len(replyText) {
		return replyText[r]
	}
	return fmt.Sprintf("unknown reply %#02x", byte(r))
}

// ReplyError is an error that carries the reply code to send. Dialers return
// one (or wrap one, or any error with a SOCKSReply method) to say why a
// destination could not be reached.
type ReplyError Reply

func (e ReplyError) Error() string { return "socks5: " + Reply(e).String() }

// SOCKSReply returns the reply code.
func (e ReplyError) SOCKSReply() byte { return byte(e) }

// Sentinel errors for dialers; compare with errors.Is.
var (
	ErrNotAllowed         error = ReplyError(ReplyNotAllowed)
	ErrNetworkUnreachable error = ReplyError(ReplyNetworkUnreachable)
	ErrHostUnreachable    error = ReplyError(ReplyHostUnreachable)
	ErrConnectionRefused  error = ReplyError(ReplyConnectionRefused)
	ErrTTLExpired         error = ReplyError(ReplyTTLExpired)
)

// replyFor maps a dial error to the reply code the client should see. An
// error with a SOCKSReply method wins; then the usual errno values; then DNS
// failures and timeouts (host unreachable); anything else is a general
// failure.
func replyFor(err error) Reply {
	var r interface{ SOCKSReply() byte }
	if errors.As(err, &r) {
		if code := Reply(r.SOCKSReply()); code != ReplySucceeded {
			return code
		}
		return ReplyGeneralFailure
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ECONNREFUSED:
			return ReplyConnectionRefused
		case syscall.EHOSTUNREACH, syscall.EHOSTDOWN, syscall.ETIMEDOUT:
			return ReplyHostUnreachable
		case syscall.ENETUNREACH, syscall.ENETDOWN:
			return ReplyNetworkUnreachable
		case syscall.EACCES, syscall.EPERM:
			return ReplyNotAllowed
		}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return ReplyHostUnreachable
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return ReplyHostUnreachable
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReplyHostUnreachable
	}
	return ReplyGeneralFailure
}
