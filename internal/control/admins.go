package control

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// The web panel's administrators and audit log, with the rules of
// access.SQLiteStore's (internal/access/admins.go), so a panel serves a
// fleet as it serves one server. They belong to the control plane alone:
// nothing here is logged as a change or replicated to nodes.

const adminColumns = `id, name, role, password_hash, totp_secret, setup_hash, setup_expires, created_at`

func scanAdmin(sc scanner) (*access.Admin, error) {
	var a access.Admin
	var exp, created int64
	if err := sc.Scan(&a.ID, &a.Name, &a.Role, &a.PasswordHash, &a.TOTPSecret, &a.SetupHash, &exp, &created); err != nil {
		return nil, err
	}
	a.SetupExpires, a.CreatedAt = fromUnix(exp), fromUnix(created)
	return &a, nil
}

// adminLock is the PostgreSQL advisory lock key that serializes changes to
// administrators ("burrowad"), so two owners demoted at once cannot both
// see the other still an owner.
const adminLock = 0x627572726f776164

// CreateAdmin adds an administrator. A name taken case-insensitively wraps
// access.ErrExists.
func (s *SQLStore) CreateAdmin(ctx context.Context, a access.Admin) (*access.Admin, error) {
	what := fmt.Sprintf("create admin %.80q", a.Name)
	if err := access.ValidateName(a.Name); err != nil {
		return nil, wrap(what, err)
	}
	role, err := access.ParseRole(a.Role)
	if err != nil {
		return nil, wrap(what, err)
	}
	now := s.now().UTC().Unix()
	var out *access.Admin
	err = s.inTx(ctx, func(tx *sql.Tx) (err error) {
		out, err = scanAdmin(s.row(ctx, tx, `INSERT INTO admins
			(name, name_key, role, password_hash, totp_secret, setup_hash, setup_expires, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING `+adminColumns,
			a.Name, access.NameKey(a.Name), role, a.PasswordHash, a.TOTPSecret, a.SetupHash, toUnix(a.SetupExpires), now))
		return err
	})
	if errors.Is(err, access.ErrExists) {
		return nil, fmt.Errorf("control: admin %.80q: %w", a.Name, access.ErrExists)
	}
	if err != nil {
		return nil, wrap(what, err)
	}
	return out, nil
}

func (s *SQLStore) adminWhere(ctx context.Context, what, where string, arg any) (*access.Admin, error) {
	var a *access.Admin
	err := s.retrying(ctx, func() (err error) {
		a, err = scanAdmin(s.row(ctx, s.db, `SELECT `+adminColumns+` FROM admins WHERE `+where, arg))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(what)
	}
	return a, wrap(what, err)
}

// AdminByName returns the administrator named name (case-insensitively).
func (s *SQLStore) AdminByName(ctx context.Context, name string) (*access.Admin, error) {
	what := fmt.Sprintf("admin %.80q", name)
	if access.ValidateName(name) != nil {
		return nil, notFound(what) // never stored; PostgreSQL would refuse a NUL in it
	}
	return s.adminWhere(ctx, what, `name_key = ?`, access.NameKey(name))
}

// AdminBySetupHash returns the administrator whose pending setup token
// hashes to hash.
func (s *SQLStore) AdminBySetupHash(ctx context.Context, hash string) (*access.Admin, error) {
	if hash == "" {
		return nil, notFound("admin by setup token")
	}
	return s.adminWhere(ctx, "admin by setup token", `setup_hash = ?`, hash)
}

// ListAdmins returns every administrator, by name.
func (s *SQLStore) ListAdmins(ctx context.Context) ([]*access.Admin, error) {
	var out []*access.Admin
	err := s.retrying(ctx, func() error {
		out = out[:0]
		rows, err := s.rows(ctx, s.db, `SELECT `+adminColumns+` FROM admins ORDER BY name_key`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			a, err := scanAdmin(rows)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return rows.Err()
	})
	return out, wrap("list admins", err)
}

// RemoveAdmin deletes the named administrator. The last owner cannot be
// removed (access.ErrInvalid): someone must be able to manage the panel.
func (s *SQLStore) RemoveAdmin(ctx context.Context, name string) error {
	return s.changeAdmin(ctx, fmt.Sprintf("remove admin %.80q", name), name, func(tx *sql.Tx, a *access.Admin) error {
		if err := s.keepAnOwner(ctx, tx, a, ""); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `DELETE FROM admins WHERE id = ?`, a.ID)
		return err
	})
}

// SetAdminRole changes the named administrator's role; the last owner keeps
// theirs (access.ErrInvalid).
func (s *SQLStore) SetAdminRole(ctx context.Context, name, role string) error {
	what := fmt.Sprintf("set role of admin %.80q", name)
	role, err := access.ParseRole(role)
	if err != nil {
		return wrap(what, err)
	}
	return s.changeAdmin(ctx, what, name, func(tx *sql.Tx, a *access.Admin) error {
		if err := s.keepAnOwner(ctx, tx, a, role); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `UPDATE admins SET role = ? WHERE id = ?`, role, a.ID)
		return err
	})
}

// SetAdminPassword stores a password hash for the named administrator and
// ends any pending setup token.
func (s *SQLStore) SetAdminPassword(ctx context.Context, name, hash string) error {
	what := fmt.Sprintf("set password of admin %.80q", name)
	if hash == "" {
		return wrap(what, invalid("password hash", "empty"))
	}
	return s.changeAdmin(ctx, what, name, func(tx *sql.Tx, a *access.Admin) error {
		_, err := s.exec(ctx, tx, `UPDATE admins SET password_hash = ?, setup_hash = '', setup_expires = 0 WHERE id = ?`, hash, a.ID)
		return err
	})
}

// SetAdminSetup stores a new setup token's hash (valid until expires) for
// the named administrator, replacing any pending one.
func (s *SQLStore) SetAdminSetup(ctx context.Context, name, hash string, expires time.Time) error {
	return s.changeAdmin(ctx, fmt.Sprintf("set setup token of admin %.80q", name), name, func(tx *sql.Tx, a *access.Admin) error {
		_, err := s.exec(ctx, tx, `UPDATE admins SET setup_hash = ?, setup_expires = ? WHERE id = ?`, hash, toUnix(expires), a.ID)
		return err
	})
}

// SetAdminTOTP sets (or, with "", turns off) the administrator's TOTP secret.
func (s *SQLStore) SetAdminTOTP(ctx context.Context, name, secret string) error {
	return s.changeAdmin(ctx, fmt.Sprintf("set TOTP of admin %.80q", name), name, func(tx *sql.Tx, a *access.Admin) error {
		_, err := s.exec(ctx, tx, `UPDATE admins SET totp_secret = ? WHERE id = ?`, secret, a.ID)
		return err
	})
}

// changeAdmin runs f on the named administrator inside a write transaction
// that no other change to administrators runs alongside.
func (s *SQLStore) changeAdmin(ctx context.Context, what, name string, f func(*sql.Tx, *access.Admin) error) error {
	if access.ValidateName(name) != nil {
		return wrap(what, fmt.Errorf("admin: %w", access.ErrNotFound))
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if s.d.name == "postgres" {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(adminLock)); err != nil {
				return err
			}
		}
		a, err := scanAdmin(s.row(ctx, tx, `SELECT `+adminColumns+` FROM admins WHERE name_key = ?`, access.NameKey(name)))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("admin: %w", access.ErrNotFound)
		}
		if err != nil {
			return err
		}
		return f(tx, a)
	})
	return wrap(what, err)
}

// keepAnOwner refuses to leave no owner: a is being removed (newRole "")
// or given newRole.
func (s *SQLStore) keepAnOwner(ctx context.Context, tx *sql.Tx, a *access.Admin, newRole string) error {
	if a.Role != access.RoleOwner || newRole == access.RoleOwner {
		return nil
	}
	var n int
	if err := s.row(ctx, tx, `SELECT COUNT(*) FROM admins WHERE role = 'owner'`).Scan(&n); err != nil {
		return err
	}
	if n <= 1 {
		return invalid("admin", "%s is the last owner; make another admin owner first", a.Name)
	}
	return nil
}

// AddAudit appends an entry to the audit log (At defaults to now). A
// detail longer than access.MaxAuditDetail bytes is cut, between
// characters.
func (s *SQLStore) AddAudit(ctx context.Context, e access.AuditEntry) error {
	if e.Admin == "" || e.Action == "" {
		return wrap("audit", invalid("entry", "admin and action are required"))
	}
	e.Admin, e.Action, e.Target = auditText(e.Admin), auditText(e.Action), auditText(e.Target)
	e.Detail = access.TruncateUTF8(auditText(e.Detail), access.MaxAuditDetail)
	if e.At.IsZero() {
		e.At = s.now()
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO admin_audit (at, admin, action, target, detail) VALUES (?, ?, ?, ?, ?)`,
			e.At.Unix(), e.Admin, e.Action, e.Target, e.Detail)
		return err
	})
	return wrap("audit", err)
}

// Audit returns up to limit (at least 1) entries older than entry id
// before (all when before is 0), newest first.
func (s *SQLStore) Audit(ctx context.Context, before int64, limit int) ([]access.AuditEntry, error) {
	if limit < 1 {
		return nil, wrap("audit", invalid("limit", "%d is not positive", limit))
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	var out []access.AuditEntry
	err := s.retrying(ctx, func() error {
		out = out[:0]
		rows, err := s.rows(ctx, s.db, `SELECT id, at, admin, action, target, detail FROM admin_audit
			WHERE id < ? ORDER BY id DESC LIMIT ?`, before, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e access.AuditEntry
			var at int64
			if err := rows.Scan(&e.ID, &at, &e.Admin, &e.Action, &e.Target, &e.Detail); err != nil {
				return err
			}
			e.At = fromUnix(at)
			out = append(out, e)
		}
		return rows.Err()
	})
	return out, wrap("audit", err)
}

// auditText makes s storable as PostgreSQL text, as SQLite would keep it
// (valid UTF-8 without NUL), so an entry is never lost to odd bytes.
func auditText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
