//go:build !race

package e2e

const raceSlowdown = 1
