//go:build !unix

package bench

import (
	"testing"
	"time"
)

// cpuTime is zero where the process's CPU time is not read; the cpu-ns/B
// metric then reads 0.
func cpuTime(*testing.B) time.Duration { return 0 }
