package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/burrow-vpn/burrow/internal/route"
)

// dnsRelay carries the TUN's DNS queries to one resolver over one
// tunnelled UDP flow, kept open between queries (a tunnel handshake per
// query would add round trips to every lookup). Query IDs are rewritten so
// concurrent queries from different programs cannot collide, and restored
// in the answers. When the flow fails or the server closes it (idle), the
// next query opens a new one.
type dnsRelay struct {
	dial func(ctx context.Context) (net.Conn, error)
	// Retry is how long to wait for an answer before sending again (3 tries).
	retry time.Duration

	mu      sync.Mutex
	conn    net.Conn               // guarded by mu; nil until needed
	next    uint16                 // guarded by mu; next relay ID
	waiting map[uint16]chan []byte // guarded by mu; relay ID → answer
	closed  bool                   // guarded by mu
	readers sync.WaitGroup         // one readLoop per conn
}

func newDNSRelay(dial func(ctx context.Context) (net.Conn, error)) *dnsRelay {
	return &dnsRelay{dial: dial, retry: 2 * time.Second, waiting: make(map[uint16]chan []byte)}
}

var errRelayClosed = errors.New("dns: relay closed")

var errFlowClosed = errors.New("dns: the tunnelled flow to the resolver closed")

// Exchange sends one query (at least a 12-byte header) and returns the
// answer with the query's own ID. A query caught by the flow closing (the
// server ends idle flows) is sent once more on a new flow.
func (r *dnsRelay) Exchange(ctx context.Context, q []byte) ([]byte, error) {
	if len(q) < 12 {
		return nil, errors.New("dns: query shorter than a header")
	}
	resp, err := r.exchangeOnce(ctx, q)
	if errors.Is(err, errFlowClosed) {
		resp, err = r.exchangeOnce(ctx, q)
	}
	return resp, err
}

func (r *dnsRelay) exchangeOnce(ctx context.Context, q []byte) ([]byte, error) {
	conn, id, ch, err := r.register(ctx)
	if err != nil {
		return nil, err
	}
	defer r.unregister(id)
	msg := append([]byte(nil), q...)
	binary.BigEndian.PutUint16(msg, id)
	for try := 0; try < 3; try++ {
		if _, err := conn.Write(msg); err != nil {
			r.drop(conn)
			return nil, fmt.Errorf("%w: %v", errFlowClosed, err)
		}
		t := time.NewTimer(r.retry)
		select {
		case resp := <-ch:
			t.Stop()
			if resp == nil {
				return nil, errFlowClosed
			}
			copy(resp, q[:2])
			return resp, nil
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("dns: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil, errors.New("dns: no answer from the resolver through the tunnel")
}

// register returns the open flow (dialling one if needed) and a fresh ID
// with the channel its answer arrives on.
func (r *dnsRelay) register(ctx context.Context) (net.Conn, uint16, chan []byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, 0, nil, errRelayClosed
	}
	if r.conn == nil {
		c, err := r.dial(ctx)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("dns: %w", err)
		}
		r.conn = c
		r.readers.Add(1)
		go r.readLoop(c)
	}
	if len(r.waiting) >= 1<<15 {
		return nil, 0, nil, errors.New("dns: too many queries in flight")
	}
	for {
		r.next++
		if _, busy := r.waiting[r.next]; !busy {
			break
		}
	}
	ch := make(chan []byte, 1)
	r.waiting[r.next] = ch
	return r.conn, r.next, ch, nil
}

func (r *dnsRelay) unregister(id uint16) {
	r.mu.Lock()
	delete(r.waiting, id)
	r.mu.Unlock()
}

// readLoop hands each answer on conn to the query waiting for its ID.
func (r *dnsRelay) readLoop(conn net.Conn) {
	defer r.readers.Done()
	buf := make([]byte, 65535)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			r.drop(conn)
			return
		}
		if n < 12 {
			continue
		}
		id := binary.BigEndian.Uint16(buf)
		r.mu.Lock()
		ch := r.waiting[id]
		delete(r.waiting, id)
		r.mu.Unlock()
		if ch != nil {
			ch <- append([]byte(nil), buf[:n]...)
		}
	}
}

// drop closes conn and, if it is still the current flow, forgets it and
// fails the queries waiting on it (they may retry on a new flow).
func (r *dnsRelay) drop(conn net.Conn) {
	conn.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn != conn {
		return
	}
	r.conn = nil
	for id, ch := range r.waiting {
		ch <- nil
		delete(r.waiting, id)
	}
}

// Close closes the flow and waits for its reader.
func (r *dnsRelay) Close() {
	r.mu.Lock()
	r.closed = true
	c := r.conn
	r.mu.Unlock()
	if c != nil {
		r.drop(c)
	}
	r.readers.Wait()
}

// exchangeDNS answers one query the TUN captured: NXDOMAIN for a name a
// block rule matches, otherwise the resolver's answer through the tunnel,
// whose addresses are recorded so later connections to them can be matched
// by name.
func (c *Client) exchangeDNS(ctx context.Context, q []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil, fmt.Errorf("dns: parse query: %w", err)
	}
	question, err := p.Question()
	if err != nil {
		return nil, fmt.Errorf("dns: parse query: %w", err)
	}
	if a, ok := c.cfg.Rules.MatchName(question.Name.String()); ok && a == route.Block {
		return nxdomain(h, question)
	}
	resp, err := c.tun.dns.Exchange(ctx, q)
	if err != nil {
		return nil, err
	}
	c.recordAnswers(resp)
	return resp, nil
}

// recordAnswers notes every A and AAAA record of resp under the name that
// was asked (so a CNAME chain maps back to the name rules are written for).
func (c *Client) recordAnswers(resp []byte) {
	var p dnsmessage.Parser
	if _, err := p.Start(resp); err != nil {
		return
	}
	q, err := p.Question()
	if err != nil {
		return
	}
	if err := p.SkipAllQuestions(); err != nil {
		return
	}
	now := time.Now()
	for {
		h, err := p.AnswerHeader()
		if err != nil {
			return
		}
		ttl := time.Duration(h.TTL) * time.Second
		switch h.Type {
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return
			}
			c.tun.names.Record(q.Name.String(), netip.AddrFrom4(r.A), ttl, now)
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return
			}
			c.tun.names.Record(q.Name.String(), netip.AddrFrom16(r.AAAA), ttl, now)
		default:
			if err := p.SkipAnswer(); err != nil {
				return
			}
		}
	}
}

func nxdomain(h dnsmessage.Header, q dnsmessage.Question) ([]byte, error) {
	h.Response = true
	h.RecursionAvailable = true
	h.RCode = dnsmessage.RCodeNameError
	m := dnsmessage.Message{Header: h, Questions: []dnsmessage.Question{q}}
	return m.Pack()
}
