//go:build race

package tunnels

// raceSlowdown stretches the lab's idle limits under the race detector,
// which slows REALITY handshakes (and so the rotating transport) several times.
const raceSlowdown = 8
