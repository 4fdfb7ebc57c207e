//go:build race

package topics

// raceEnabled scales the heavier randomized and concurrent tests down under
// the race detector, which makes them ~10x slower.
const raceEnabled = true
