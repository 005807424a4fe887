// Package panel is Burrow's web panel: server-rendered pages (html/template)
// with one small script and one stylesheet, all embedded, from which
// administrators manage users, watch a server and read the audit log, in
// English or Russian, on a desktop or a phone.
//
// It depends on interfaces, so one server (`burrow server run --panel`)
// and a fleet's control plane can serve the same code:
//
//   - Users: the admin API (internal/admin) plus paging and per-day
//     traffic. Every change goes through it, so the panel validates input
//     exactly as `burrow user` does, and a revocation reaches the running
//     server at once (admin.Local's Changed), cutting live connections.
//   - Admins: administrators and the audit log (access.SQLiteStore).
//   - Links: a user's links (one per transport, node or relay path).
//
// Routes (every POST needs a session of at least the role named, and the
// session's CSRF token in the form field "csrf"; otherwise 401 or 403):
//
//	GET  /login, POST /login            name, password, TOTP code
//	GET  /setup/{token}, POST           one-time link from `burrow admin add`: set the password
//	GET  /lang/{en|ru}?back=PATH        language switch (a cookie)
//	POST /logout                        viewer
//	GET  /users?q=&filter=&page=        viewer; filter: active, expiring, over_quota, revoked, online
//	POST /users                         operator: add
//	GET  /users/{name}                  viewer; links, QR codes and subscription URL for operators
//	POST /users/{name}/edit             operator: quota, expiry, reset period, note
//	POST /users/{name}/{revoke|enable|rotate|reset-traffic}   operator
//	GET  /account                       viewer: one's own password and TOTP
//	POST /account/password              viewer: current, password, password2
//	POST /account/totp                  viewer: step=start|confirm (secret, code)|off (code)
//	GET  /server                        viewer: health, counters, block telemetry
//	GET  /admins?before=ID              viewer: administrators and the audit log
//	POST /admins, /admins/{name}/{remove|role|setup}          owner
//
// Security: passwords are argon2id hashes (at least 12 characters); TOTP
// (RFC 6238, 30 s, 6 digits, each code once) is optional per admin; login
// attempts are limited per source address and per account before any hash
// is computed; sessions live in memory (a restart logs everyone out) behind
// HttpOnly, SameSite=Strict cookies, Secure over TLS, ending after
// SessionIdle unused or SessionTTL in all; the role is read from the store on
// every request, so a removal or demotion acts at once. Every response
// carries a Content-Security-Policy without inline script or style,
// frame-ancestors 'none', nosniff, no-referrer and no-store; requests naming
// a host other than an IP address, localhost or Config.Hosts are refused
// (DNS rebinding). There are no default credentials. The audit log records
// who did what to which user or admin, never a destination or an address.
package panel
