// Package admin is Burrow's administration API: users, live counters and
// health, as Go methods (the API interface) and over HTTP.
//
// API has two implementations with the same behaviour. Local works on the
// user store directly (plus the running server's live state when it runs in
// the server process); Client speaks HTTP to a running server's Handler,
// which wraps a Local. `burrow user ...` uses a Client when the server's unix
// socket answers and a Local on the store otherwise, so every command has one
// code path, and validation (names, sizes, dates) happens in one place:
// Local, inside whichever process owns the store.
//
// The HTTP API listens on a unix socket (DATA/admin.sock, mode 0600: the
// file permissions are the authentication) and optionally on a loopback TCP
// address that requires "Authorization: Bearer TOKEN". Requests and responses
// are JSON (UTF-8), bodies at most 64 KiB:
//
//	GET   /v1/health                        → Health
//	GET   /v1/stats                         → Stats
//	GET   /v1/users                         → [UserInfo...]
//	POST  /v1/users                  AddRequest → UserInfo (201)
//	GET   /v1/users/{name}                  → UserInfo
//	PATCH /v1/users/{name}           SetRequest → UserInfo
//	POST  /v1/users/{name}/revoke           → UserInfo
//	POST  /v1/users/{name}/enable           → UserInfo (revocation lifted)
//	POST  /v1/users/{name}/rotate           → UserInfo (new UUID; 400 for a revoked user)
//	POST  /v1/users/{name}/reset-traffic    → UserInfo
//
// {name} is path-escaped and matched case-insensitively. Errors are
// {"error": "why"} with 400 (invalid input: the message says what and why),
// 401 (missing or wrong token), 404 (no such user, or no such route), 409
// (name taken), 413 (body too large) or 500. Unknown JSON fields are
// refused.
//
// Responses carry access keys (UUIDs, subscription tokens): that is why the
// socket is private and the TCP listener needs a token. Nothing here is
// logged.
package admin
