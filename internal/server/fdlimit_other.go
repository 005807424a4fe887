//go:build !unix

package server

// RaiseFileLimit does nothing here: there is no RLIMIT_NOFILE. It returns 0.
func RaiseFileLimit() (uint64, error) { return 0, nil }

func fileLimit() uint64 { return 0 }
