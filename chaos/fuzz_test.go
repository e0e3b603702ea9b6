package chaos_test

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringfence/ringfence/chaos"
)

// FuzzSchedule builds a schedule from bytes: each pair is a phase's Start
// and Duration in seconds. An invalid schedule must be rejected with
// ErrInvalidSettings; a valid one must apply, at the given offset, exactly
// the phase the documented rules pick.
func FuzzSchedule(f *testing.F) {
	f.Add([]byte{10, 10, 20, 20}, int64(20))
	f.Add([]byte{0, 0, 60, 0}, int64(59))
	f.Add([]byte{5, 10, 10, 1}, int64(7))
	f.Add([]byte{30, 0, 20, 0}, int64(25))
	f.Fuzz(func(t *testing.T, b []byte, offset int64) {
		var phases []chaos.Phase
		for i := 0; i+1 < len(b) && len(phases) < 8; i += 2 {
			phases = append(phases, chaos.Phase{
				Name:     fmt.Sprint(len(phases)),
				Start:    time.Duration(b[i]) * time.Second,
				Duration: time.Duration(b[i+1]) * time.Second,
			})
		}
		s := chaos.Settings{Phases: phases}
		in, err := chaos.New(s)
		if err != nil {
			if !errors.Is(err, chaos.ErrInvalidSettings) {
				t.Fatalf("New(%+v) = %v, want an error wrapping ErrInvalidSettings", phases, err)
			}
			return
		}
		if !valid(phases) {
			t.Fatalf("New(%+v) accepted an invalid schedule", phases)
		}
		off := time.Duration(offset%300) * time.Second
		want := -1
		for i, p := range phases {
			end := time.Duration(math.MaxInt64)
			switch {
			case p.Duration > 0:
				end = p.Start + p.Duration
			case i+1 < len(phases):
				end = phases[i+1].Start
			}
			if p.Start <= off && off < end {
				if want >= 0 {
					t.Fatalf("phases %d and %d both apply at %v in %+v", want, i, off, phases)
				}
				want = i
			}
		}
		synctest.Test(t, func(t *testing.T) {
			in, err = chaos.New(chaos.Settings{Phases: phases, Start: time.Now().Add(-off)})
			if err != nil {
				t.Fatal(err)
			}
			p, ok := in.Current()
			switch {
			case want < 0 && ok:
				t.Fatalf("Current() at %v = %q, want no phase in %+v", off, p.Name, phases)
			case want >= 0 && (!ok || p.Name != phases[want].Name):
				t.Fatalf("Current() at %v = %q, %v, want %q in %+v", off, p.Name, ok, phases[want].Name, phases)
			}
		})
	})
}

// valid is an independent statement of the schedule rules: phases in
// strictly increasing order of Start, none starting before the previous
// one has ended.
func valid(phases []chaos.Phase) bool {
	for i := 1; i < len(phases); i++ {
		prev := phases[i-1]
		if phases[i].Start <= prev.Start {
			return false
		}
		if prev.Duration > 0 && phases[i].Start < prev.Start+prev.Duration {
			return false
		}
	}
	return true
}
