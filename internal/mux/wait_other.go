//go:build !unix

package mux

import "io"

// readyWaiter returns nil: where it cannot wait for readability, a loop reads into its
// buffer at once.
func readyWaiter(io.Reader) func() { return nil }
