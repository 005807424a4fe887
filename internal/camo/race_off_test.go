//go:build !race

package camo

// raceEnabled: the race detector is on, which makes tests much slower.
const raceEnabled = false
