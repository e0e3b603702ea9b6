//go:build !race

package rollout_test

// raceEnabled reports whether the race detector is on.
const raceEnabled = false
