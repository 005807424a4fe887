package control

import (
	"encoding/base64"
	"encoding/hex"
	"net"
	"strconv"
	"strings"
	"unicode"
)

// Bounds on what a node reports: it is read back by operators' tools.
const (
	maxField  = 255
	maxHealth = 200
)

func (ep *Endpoint) validate() error {
	host, port, err := net.SplitHostPort(ep.Addr)
	if err != nil || host == "" || len(ep.Addr) > maxField {
		return invalid("endpoint address", "%.80q is not HOST:PORT", ep.Addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return invalid("endpoint address", "%.80q: port must be 1-65535", ep.Addr)
	}
	if ep.SNI != "" && (len(ep.SNI) > 253 || strings.ContainsAny(ep.SNI, " /:\t\r\n") || !printable(ep.SNI)) {
		return invalid("endpoint sni", "%.80q is not a DNS name", ep.SNI)
	}
	if ep.PublicKey != "" {
		if b, err := base64.RawURLEncoding.DecodeString(ep.PublicKey); err != nil || len(b) != 32 {
			return invalid("endpoint public key", "want 43 characters of base64url (32 bytes)")
		}
	}
	if b, err := hex.DecodeString(ep.ShortID); err != nil || len(b) > 8 {
		return invalid("endpoint short id", "%.40q is not 0..16 hex digits", ep.ShortID)
	}
	if ep.Cover != "" {
		if h, _, err := net.SplitHostPort(ep.Cover); err != nil || h == "" || len(ep.Cover) > maxField || !printable(ep.Cover) {
			return invalid("endpoint cover", "%.80q is not HOST:PORT", ep.Cover)
		}
	}
	if len(ep.Fingerprint) > 32 || !printable(ep.Fingerprint) || strings.Contains(ep.Fingerprint, " ") {
		return invalid("endpoint fingerprint", "%.40q is not a browser name", ep.Fingerprint)
	}
	return nil
}

// MaxOnline bounds the online list of one status report (an exit with
// more users online reports the count alone).
const MaxOnline = 1 << 16

func (st *NodeStatus) validate() error {
	switch {
	case len(st.Version) > 64 || !printable(st.Version):
		return invalid("status version", "%.80q is not a short printable string", st.Version)
	case len(st.Health) > maxHealth || !printable(st.Health):
		return invalid("status health", "not printable or over %d bytes", maxHealth)
	case st.UsersOnline < 0 || st.BytesUp < 0 || st.BytesDown < 0 || st.AppliedVersion < 0:
		return invalid("status", "negative count")
	case len(st.Online) > MaxOnline:
		return invalid("status", "%d users online listed, over %d", len(st.Online), MaxOnline)
	case len(st.Online) > 0 && len(st.Online) != st.UsersOnline:
		return invalid("status", "%d users online listed, %d counted", len(st.Online), st.UsersOnline)
	}
	last := int64(0)
	for _, u := range st.Online {
		if u[0] <= last || u[1] <= 0 {
			return invalid("status", "online entry %v: want ascending user ids with at least one connection", u)
		}
		last = u[0]
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
