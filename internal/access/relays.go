package access

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Relay is an entry relay an exit lets carry its clients' connections
// (burrow relay). It is not a user: it holds no user's key and is counted
// apart. Its credential is the short ID it presents in its REALITY
// handshakes with the exit plus Secret, sent on every relayed stream.
type Relay struct {
	ID        int64
	Name      string
	ShortID   [8]byte  // REALITY short ID, never one of the exit's users' IDs
	Secret    [16]byte // credential sent on every stream
	CreatedAt time.Time
	Revoked   bool
	// AnnouncedSNI and AnnouncedCover are the cover the relay last said it
	// shows probers ("" when it uses the exit's).
	AnnouncedSNI   string
	AnnouncedCover string
	// AnnouncedAddr is the public HOST:PORT the relay says clients reach it at.
	AnnouncedAddr string
}

// ErrRelayRevoked is returned (wrapped) by CreateRelay for a name whose
// relay was revoked: a revoked name is not reused, so a seized token can
// never come back to life.
var ErrRelayRevoked = errors.New("relay revoked")

const relayColumns = `id, name, short_id, secret, created_at, revoked, announced_sni, announced_cover, announced_addr`

func scanRelay(sc scanner) (*Relay, error) {
	var r Relay
	var sid, secret string
	var created, revoked int64
	if err := sc.Scan(&r.ID, &r.Name, &sid, &secret, &created, &revoked, &r.AnnouncedSNI, &r.AnnouncedCover, &r.AnnouncedAddr); err != nil {
		return nil, err
	}
	if b, err := hex.DecodeString(sid); err != nil || len(b) != len(r.ShortID) {
		return nil, fmt.Errorf("relay %q: bad short id in store", r.Name)
	} else {
		copy(r.ShortID[:], b)
	}
	if b, err := hex.DecodeString(secret); err != nil || len(b) != len(r.Secret) {
		return nil, fmt.Errorf("relay %q: bad secret in store", r.Name)
	} else {
		copy(r.Secret[:], b)
	}
	r.CreatedAt = fromUnix(created)
	r.Revoked = revoked != 0
	return &r, nil
}

// CreateRelay returns the relay called name, creating it with a fresh
// random short ID and secret if there is none. A revoked one is an error
// wrapping ErrRelayRevoked. The short ID never equals one in taken (the
// exit's own short IDs).
func (s *SQLiteStore) CreateRelay(ctx context.Context, name string, taken [][8]byte) (*Relay, error) {
	if err := ValidateName(name); err != nil {
		return nil, fmt.Errorf("access: relay: %w", err)
	}
	key := NameKey(name)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		r, err := scanRelay(tx.QueryRowContext(ctx, `SELECT `+relayColumns+` FROM relays WHERE name_key = ?`, key))
		switch {
		case err == nil && r.Revoked:
			return fmt.Errorf("%w: relay %q was revoked; give the new relay another name", ErrRelayRevoked, r.Name)
		case err == nil:
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		var sid [8]byte
		for {
			rand.Read(sid[:])
			if !containsID(taken, sid) {
				break
			}
		}
		var secret [16]byte
		rand.Read(secret[:])
		_, err = tx.ExecContext(ctx, `INSERT INTO relays (name, name_key, short_id, secret, created_at) VALUES (?, ?, ?, ?, ?)`,
			name, key, hex.EncodeToString(sid[:]), hex.EncodeToString(secret[:]), s.now().Unix())
		return err
	})
	if err != nil {
		return nil, wrapOnce(fmt.Sprintf("relay %.80q", name), err)
	}
	return s.RelayByName(ctx, name)
}

func containsID(ids [][8]byte, id [8]byte) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// RelayByName returns the relay called name (case-insensitive).
func (s *SQLiteStore) RelayByName(ctx context.Context, name string) (*Relay, error) {
	var r *Relay
	err := retryBusy(ctx, func() (err error) {
		r, err = scanRelay(s.db.QueryRowContext(ctx, `SELECT `+relayColumns+` FROM relays WHERE name_key = ?`, NameKey(name)))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(fmt.Sprintf("relay %.80q", name))
	}
	if err != nil {
		return nil, fmt.Errorf("access: relay %.80q: %w", name, err)
	}
	return r, nil
}

// ListRelays returns every relay, revoked ones included, ordered by ID.
func (s *SQLiteStore) ListRelays(ctx context.Context) ([]*Relay, error) {
	var out []*Relay
	err := retryBusy(ctx, func() error {
		out = nil
		rows, err := s.db.QueryContext(ctx, `SELECT `+relayColumns+` FROM relays ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanRelay(rows)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("access: list relays: %w", err)
	}
	return out, nil
}

// RevokeRelay marks the relay revoked. Revoking is final.
func (s *SQLiteStore) RevokeRelay(ctx context.Context, id int64) error {
	return s.updateOne(ctx, "revoke relay", `UPDATE relays SET revoked = 1 WHERE id = ?`, id)
}

// SetRelayAnnounce records what the relay says of itself: the cover it
// shows probers and its public address.
func (s *SQLiteStore) SetRelayAnnounce(ctx context.Context, id int64, sni, cover, addr string) error {
	return s.updateOne(ctx, "relay announce", `UPDATE relays SET announced_sni = ?, announced_cover = ?, announced_addr = ? WHERE id = ?`, sni, cover, addr, id)
}
