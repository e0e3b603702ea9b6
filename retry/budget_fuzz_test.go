package retry_test

import (
	"testing"

	"github.com/ringfence/ringfence/retry"
)

// FuzzBudget drives a Budget with a sequence of retries (even bytes) and
// successes (odd bytes) and checks it against a model in whole millionths
// of a token, and the guarantee retries <= ratio*successes + max/2 + 1.
func FuzzBudget(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0}, uint8(10), uint16(100))
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 1, 1, 1, 0}, uint8(3), uint16(500))
	f.Add([]byte{1, 1, 0, 0, 0, 0, 1, 0}, uint8(1), uint16(1000))
	f.Fuzz(func(t *testing.T, ops []byte, maxTokens uint8, ratioMilli uint16) {
		if maxTokens == 0 || ratioMilli == 0 || ratioMilli > 1000 {
			return
		}
		ratio := float64(ratioMilli) / 1000
		b, err := retry.NewBudget(ratio, int(maxTokens))
		if err != nil {
			t.Fatalf("NewBudget(%v, %d) = %v", ratio, maxTokens, err)
		}
		const unit = 1_000_000
		capacity := int64(maxTokens) * unit
		tokens := capacity
		retries, successes := 0, 0
		for i, op := range ops {
			if op%2 == 0 {
				want := tokens > capacity/2
				if got := b.AllowRetry(); got != want {
					t.Fatalf("op %d: AllowRetry() = %v, want %v with %d µtokens", i, got, want, tokens)
				}
				if want {
					tokens -= unit
					retries++
				}
			} else {
				b.RecordSuccess()
				tokens = min(tokens+int64(ratioMilli)*1000, capacity)
				successes++
			}
			if got, want := b.Tokens(), float64(tokens)/unit; got != want {
				t.Fatalf("op %d: Tokens() = %v, want %v", i, got, want)
			}
			if bound := ratio*float64(successes) + float64(maxTokens)/2 + 1; float64(retries) > bound {
				t.Fatalf("op %d: %d retries after %d successes, want <= %v", i, retries, successes, bound)
			}
		}
	})
}
