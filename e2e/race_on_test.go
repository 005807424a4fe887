//go:build race

package e2e

// raceSlowdown stretches the lab's idle limits under the race detector,
// which slows REALITY handshakes (and so the rotating transport) several times.
const raceSlowdown = 8

// skipUnderRace skips a lab verdict test under the race detector: the lab
// judges timing-shaped traffic (the rotating transport's handshake shaping),
// which a 5–10× slowdown distorts. test.sh runs these tests without -race.
func skipUnderRace(t interface{ Skip(...any) }) {
	t.Skip("lab verdicts are timing-shaped; run without -race (test.sh does)")
}
