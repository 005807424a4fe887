package access

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Roles of a panel administrator. An owner may do everything, including
// managing administrators; an operator manages users; a viewer only looks.
const (
	RoleOwner    = "owner"
	RoleOperator = "operator"
	RoleViewer   = "viewer"
)

// ParseRole checks an administrator's role ("" means viewer: the least).
func ParseRole(s string) (string, error) {
	switch s {
	case RoleOwner, RoleOperator, RoleViewer:
		return s, nil
	case "":
		return RoleViewer, nil
	}
	return "", invalid("role", "%.20q: want owner, operator or viewer", s)
}

// Admin is one administrator of the web panel. PasswordHash is an encoded
// argon2id hash (internal/panel makes and checks it); SetupHash is the
// SHA-256 of a one-time setup token, valid until SetupExpires. Neither a
// password nor a token is stored. Admin has no String method: its fields
// are credentials.
type Admin struct {
	ID           int64
	Name         string // see ValidateName
	Role         string
	PasswordHash string // "" until the admin has set a password
	TOTPSecret   string // base32; "" when TOTP is off
	SetupHash    string // hex SHA-256 of the setup token; "" when none is pending
	SetupExpires time.Time
	CreatedAt    time.Time
}

// AuditEntry is one administrator action: who, what, on what, when. It
// never holds a user's destinations or anyone's network address.
type AuditEntry struct {
	ID     int64
	At     time.Time
	Admin  string
	Action string // e.g. "user.revoke", "admin.add", "login"
	Target string // the user or admin acted on, or ""
	Detail string // what changed, in words
}

// MaxAuditDetail is the longest detail kept, in bytes.
const MaxAuditDetail = 500

const adminColumns = `id, name, role, password_hash, totp_secret, setup_hash, setup_expires, created_at`

func scanAdmin(sc scanner) (*Admin, error) {
	var a Admin
	var exp, created int64
	if err := sc.Scan(&a.ID, &a.Name, &a.Role, &a.PasswordHash, &a.TOTPSecret, &a.SetupHash, &exp, &created); err != nil {
		return nil, err
	}
	a.SetupExpires, a.CreatedAt = fromUnix(exp), fromUnix(created)
	return &a, nil
}

// CreateAdmin adds an administrator. A name taken case-insensitively wraps
// ErrExists.
func (s *SQLiteStore) CreateAdmin(ctx context.Context, a Admin) (*Admin, error) {
	if err := ValidateName(a.Name); err != nil {
		return nil, fmt.Errorf("access: create admin: %w", err)
	}
	role, err := ParseRole(a.Role)
	if err != nil {
		return nil, fmt.Errorf("access: create admin: %w", err)
	}
	now := s.now().UTC().Unix()
	var id int64
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO admins
			(name, name_key, role, password_hash, totp_secret, setup_hash, setup_expires, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			a.Name, NameKey(a.Name), role, a.PasswordHash, a.TOTPSecret, a.SetupHash, toUnix(a.SetupExpires), now)
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	if errors.Is(err, ErrExists) {
		return nil, fmt.Errorf("access: admin %q: %w", a.Name, ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("access: create admin %q: %w", a.Name, err)
	}
	return s.adminWhere(ctx, "create admin", `id = ?`, id)
}

func (s *SQLiteStore) adminWhere(ctx context.Context, what, where string, arg any) (*Admin, error) {
	var a *Admin
	err := retryBusy(ctx, func() (err error) {
		a, err = scanAdmin(s.db.QueryRowContext(ctx, `SELECT `+adminColumns+` FROM admins WHERE `+where, arg))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("access: %s: admin: %w", what, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("access: %s: %w", what, err)
	}
	return a, nil
}

// AdminByName returns the administrator named name (case-insensitively).
func (s *SQLiteStore) AdminByName(ctx context.Context, name string) (*Admin, error) {
	return s.adminWhere(ctx, fmt.Sprintf("admin %.80q", name), `name_key = ?`, NameKey(name))
}

// AdminBySetupHash returns the administrator whose pending setup token
// hashes to hash.
func (s *SQLiteStore) AdminBySetupHash(ctx context.Context, hash string) (*Admin, error) {
	if hash == "" {
		return nil, fmt.Errorf("access: admin by setup token: %w", ErrNotFound)
	}
	return s.adminWhere(ctx, "admin by setup token", `setup_hash = ?`, hash)
}

// ListAdmins returns every administrator, by name.
func (s *SQLiteStore) ListAdmins(ctx context.Context) ([]*Admin, error) {
	var out []*Admin
	err := retryBusy(ctx, func() error {
		out = out[:0]
		rows, err := s.db.QueryContext(ctx, `SELECT `+adminColumns+` FROM admins ORDER BY name_key`)
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
	if err != nil {
		return nil, fmt.Errorf("access: list admins: %w", err)
	}
	return out, nil
}

// RemoveAdmin deletes the named administrator. The last owner cannot be
// removed (ErrInvalid): someone must be able to manage the panel.
func (s *SQLiteStore) RemoveAdmin(ctx context.Context, name string) error {
	what := fmt.Sprintf("remove admin %.80q", name)
	return s.changeAdmin(ctx, what, name, func(tx *sql.Tx, a *Admin) error {
		if err := keepAnOwner(ctx, tx, a, ""); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM admins WHERE id = ?`, a.ID)
		return err
	})
}

// SetAdminRole changes the named administrator's role; the last owner keeps
// theirs (ErrInvalid).
func (s *SQLiteStore) SetAdminRole(ctx context.Context, name, role string) error {
	role, err := ParseRole(role)
	if err != nil {
		return fmt.Errorf("access: set admin role: %w", err)
	}
	return s.changeAdmin(ctx, fmt.Sprintf("set role of admin %.80q", name), name, func(tx *sql.Tx, a *Admin) error {
		if err := keepAnOwner(ctx, tx, a, role); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE admins SET role = ? WHERE id = ?`, role, a.ID)
		return err
	})
}

// SetAdminPassword stores a password hash for the named administrator and
// ends any pending setup token.
func (s *SQLiteStore) SetAdminPassword(ctx context.Context, name, hash string) error {
	if hash == "" {
		return fmt.Errorf("access: set admin password: %w", invalid("password hash", "empty"))
	}
	return s.changeAdmin(ctx, fmt.Sprintf("set password of admin %.80q", name), name, func(tx *sql.Tx, a *Admin) error {
		_, err := tx.ExecContext(ctx, `UPDATE admins SET password_hash = ?, setup_hash = '', setup_expires = 0 WHERE id = ?`, hash, a.ID)
		return err
	})
}

// SetAdminSetup stores a new setup token's hash (valid until expires) for
// the named administrator, replacing any pending one.
func (s *SQLiteStore) SetAdminSetup(ctx context.Context, name, hash string, expires time.Time) error {
	return s.changeAdmin(ctx, fmt.Sprintf("set setup token of admin %.80q", name), name, func(tx *sql.Tx, a *Admin) error {
		_, err := tx.ExecContext(ctx, `UPDATE admins SET setup_hash = ?, setup_expires = ? WHERE id = ?`, hash, toUnix(expires), a.ID)
		return err
	})
}

// SetAdminTOTP sets (or, with "", turns off) the administrator's TOTP secret.
func (s *SQLiteStore) SetAdminTOTP(ctx context.Context, name, secret string) error {
	return s.changeAdmin(ctx, fmt.Sprintf("set TOTP of admin %.80q", name), name, func(tx *sql.Tx, a *Admin) error {
		_, err := tx.ExecContext(ctx, `UPDATE admins SET totp_secret = ? WHERE id = ?`, secret, a.ID)
		return err
	})
}

// changeAdmin runs f on the named administrator inside a write transaction.
func (s *SQLiteStore) changeAdmin(ctx context.Context, what, name string, f func(*sql.Tx, *Admin) error) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		a, err := scanAdmin(tx.QueryRowContext(ctx, `SELECT `+adminColumns+` FROM admins WHERE name_key = ?`, NameKey(name)))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("admin: %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		return f(tx, a)
	})
	if err != nil {
		return fmt.Errorf("access: %s: %w", what, err)
	}
	return nil
}

// keepAnOwner refuses to leave no owner: a is being removed (newRole "")
// or given newRole.
func keepAnOwner(ctx context.Context, tx *sql.Tx, a *Admin, newRole string) error {
	if a.Role != RoleOwner || newRole == RoleOwner {
		return nil
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM admins WHERE role = 'owner'`).Scan(&n); err != nil {
		return err
	}
	if n <= 1 {
		return invalid("admin", "%s is the last owner; make another admin owner first", a.Name)
	}
	return nil
}

// AddAudit appends an entry to the audit log (At defaults to now).
func (s *SQLiteStore) AddAudit(ctx context.Context, e AuditEntry) error {
	if e.Admin == "" || e.Action == "" {
		return fmt.Errorf("access: audit: %w", invalid("entry", "admin and action are required"))
	}
	if len(e.Detail) > MaxAuditDetail {
		e.Detail = TruncateUTF8(e.Detail, MaxAuditDetail)
	}
	if e.At.IsZero() {
		e.At = s.now()
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO admin_audit (at, admin, action, target, detail) VALUES (?, ?, ?, ?, ?)`,
			e.At.Unix(), e.Admin, e.Action, e.Target, e.Detail)
		return err
	})
	if err != nil {
		return fmt.Errorf("access: audit: %w", err)
	}
	return nil
}

// Audit returns up to limit entries older than entry id before (all when
// before is 0), newest first.
func (s *SQLiteStore) Audit(ctx context.Context, before int64, limit int) ([]AuditEntry, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	var out []AuditEntry
	err := retryBusy(ctx, func() error {
		out = out[:0]
		rows, err := s.db.QueryContext(ctx, `SELECT id, at, admin, action, target, detail FROM admin_audit
			WHERE id < ? ORDER BY id DESC LIMIT ?`, before, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e AuditEntry
			var at int64
			if err := rows.Scan(&e.ID, &at, &e.Admin, &e.Action, &e.Target, &e.Detail); err != nil {
				return err
			}
			e.At = fromUnix(at)
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("access: audit: %w", err)
	}
	return out, nil
}

// TruncateUTF8 cuts s to at most n bytes without splitting a character.
func TruncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
