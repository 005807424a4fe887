//go:build !race

package tunnels

const raceSlowdown = 1
