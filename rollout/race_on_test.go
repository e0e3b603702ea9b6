//go:build race

package rollout_test

// raceEnabled reports whether the race detector is on: the simulations
// then run one rollout per setting, as a check that they still run.
const raceEnabled = true
