//go:build race

package rollout_test

// raceEnabled reports whether the race detector is on: the long
// simulations then skip.
const raceEnabled = true
