// Package control is Burrow's fleet control plane: the store that is the
// fleet's source of truth (users, nodes, relay paths, per-node traffic,
// quota leases and the change log nodes replicate), on PostgreSQL for
// fleets or SQLite for one machine, behind the Store interface; the
// control directory's config; and the join tokens nodes are given.
//
// See docs/fleet.md for the schema, the change log's semantics, the token
// format and the quota lease bound.
package control
