package rollout

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// referenceHash computes the assignment hash exactly as the package
// documentation describes it, from the encoded message, for comparison
// with the streaming implementation.
func referenceHash(salt, key string) uint64 {
	var msg []byte
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(salt)))
	msg = append(msg, salt...)
	for len(msg)%8 != 0 {
		msg = append(msg, 0)
	}
	msg = append(msg, key...)
	length := uint64(len(msg))
	for len(msg)%8 != 0 {
		msg = append(msg, 0)
	}
	h := uint64(0x636e65666769_6e72) // "ringfenc", little-endian
	for i := 0; i < len(msg); i += 8 {
		w := binary.LittleEndian.Uint64(msg[i:])
		k := bits.RotateLeft64(w*0xC2B2AE3D27D4EB4F, 31) * 0x9E3779B185EBCA87
		h = bits.RotateLeft64(h^k, 27)*0x9E3779B185EBCA87 + 0x85EBCA77C2B2AE63
	}
	h ^= length
	h ^= h >> 33
	h *= 0xC2B2AE3D27D4EB4F
	h ^= h >> 29
	h *= 0x165667B19E3779F9
	h ^= h >> 32
	return h
}

func TestHashMatchesTheDocumentedDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randString := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return string(b)
	}
	for range 2000 {
		salt, key := randString(rng.IntN(40)), randString(rng.IntN(70))
		got, want := newHasher(salt).sum(key), referenceHash(salt, key)
		if got != want {
			t.Fatalf("sum(%q, %q) = %#x, want %#x", salt, key, got, want)
		}
	}
}

// These vectors let an implementation in another language check itself.
func TestHashVectors(t *testing.T) {
	tests := []struct {
		salt, key string
		hash      uint64
		bucket    uint32
	}{
		{"", "", 0x4290becbea38865, 16251},
		{"checkout-v2", "user-42", 0x62b0f884db046953, 385512},
		{"checkout-v2", "0123456789abcdef", 0xe65a59d525f91245, 899816},
		{"s", "a much longer key that spans several words", 0xf53b1d1223bca9e2, 957933},
	}
	for _, tt := range tests {
		h := newHasher(tt.salt).sum(tt.key)
		assert.Equal(t, tt.hash, h, "hash(%q, %q)", tt.salt, tt.key)
		assert.Equal(t, tt.bucket, bucket(h), "bucket(hash(%q, %q))", tt.salt, tt.key)
	}
}

func TestHashLengthPrefixSeparatesSaltFromKey(t *testing.T) {
	pairs := [][2]string{{"ab", "c"}, {"a", "bc"}, {"abc", ""}, {"", "abc"}, {"abc\x00", ""}, {"abc", "\x00"}}
	seen := map[uint64][2]string{}
	for _, p := range pairs {
		h := newHasher(p[0]).sum(p[1])
		if prev, ok := seen[h]; ok {
			t.Errorf("hash(%q, %q) = hash(%q, %q)", p[0], p[1], prev[0], prev[1])
		}
		seen[h] = p
	}
}

func TestBucketStaysInRange(t *testing.T) {
	for _, h := range []uint64{0, 1, math.MaxUint32, 1 << 63, math.MaxUint64} {
		if b := bucket(h); b >= Buckets {
			t.Errorf("bucket(%#x) = %d, want < %d", h, b, Buckets)
		}
	}
	assert.Equal(t, uint32(Buckets-1), bucket(math.MaxUint64), "bucket(max)")
}

// rolloutAt returns a rollout whose keys are routed as at ppm parts per
// million, without going through its lifecycle.
func rolloutAt(t testing.TB, p Plan, ppm uint32) *Rollout {
	t.Helper()
	r, err := New(p)
	require.NoError(t, err)
	r.route.Store(uint64(ppm))
	r.stats.Store(r.newStats(ppm, nil))
	return r
}

func TestVariantIsUniform(t *testing.T) {
	// 100,000 keys into 100 cells of 10,000 buckets each. Chi-square with
	// 99 degrees of freedom exceeds 148.2 with probability 0.001.
	const keys, cells = 100_000, 100
	hs := newHasher("uniformity")
	var count [cells]int
	for i := range keys {
		count[bucket(hs.sum(fmt.Sprintf("user-%d", i)))/(Buckets/cells)]++
	}
	expected := float64(keys) / cells
	chi2 := 0.0
	for _, c := range count {
		d := float64(c) - expected
		chi2 += d * d / expected
	}
	t.Logf("chi-square over %d cells: %.1f", cells, chi2)
	if chi2 > 148.2 {
		t.Errorf("chi-square = %.1f, want <= 148.2 (p = 0.001, 99 df)", chi2)
	}
}

func TestVariantShareMatchesPercent(t *testing.T) {
	const keys = 100_000
	for _, percent := range []float64{0.01, 1, 10, 50} {
		t.Run(fmt.Sprintf("%v percent of keys get the canary", percent), func(t *testing.T) {
			ppm, ok := percentPPM(percent)
			require.True(t, ok)
			r := rolloutAt(t, Plan{Salt: "share"}, ppm)
			n := 0
			for i := range keys {
				if r.Variant(fmt.Sprintf("host-%d", i)) == Canary {
					n++
				}
			}
			p := percent / 100
			sd := math.Sqrt(keys * p * (1 - p))
			if math.Abs(float64(n)-keys*p) > 5*sd {
				t.Errorf("canary keys = %d, want %.0f ± %.0f", n, keys*p, 5*sd)
			}
		})
	}
}

func TestVariantIsMonotone(t *testing.T) {
	for _, b := range []Bucketing{BucketingDefault, BucketingUnleash} {
		t.Run(fmt.Sprintf("a key in the canary stays in at higher percents with bucketing %d", b), func(t *testing.T) {
			percents := []float64{1, 2, 5, 10, 25, 50, 99, 100}
			if b == BucketingDefault {
				percents = append([]float64{0.0001, 0.01, 0.1}, percents...)
			}
			in := map[string]bool{}
			for _, pct := range percents {
				ppm, _ := percentPPM(pct)
				r := rolloutAt(t, Plan{Salt: "mono", Bucketing: b}, ppm)
				for i := range 20_000 {
					key := fmt.Sprintf("k%d", i)
					got := r.Variant(key) == Canary
					if in[key] && !got {
						t.Fatalf("Variant(%q) at %v%% = baseline, but it was canary at a lower percent", key, pct)
					}
					in[key] = got
				}
			}
			assert.Len(t, in, 20_000)
		})
	}
}

func TestVariantIsIndependentBetweenSalts(t *testing.T) {
	const keys = 100_000
	a := rolloutAt(t, Plan{Salt: "rollout-a"}, 100_000) // 10%
	b := rolloutAt(t, Plan{Salt: "rollout-b"}, 100_000)
	both := 0
	for i := range keys {
		key := fmt.Sprintf("tenant-%d", i)
		if a.Variant(key) == Canary && b.Variant(key) == Canary {
			both++
		}
	}
	// Independent 10% cohorts overlap on 1% of keys.
	p := 0.01
	sd := math.Sqrt(keys * p * (1 - p))
	if math.Abs(float64(both)-keys*p) > 5*sd {
		t.Errorf("keys in both canaries = %d, want %.0f ± %.0f", both, keys*p, 5*sd)
	}
}

func TestVariantExtremes(t *testing.T) {
	tests := []struct {
		name string
		ppm  uint32
		want Variant
	}{
		{"no key is in the canary at 0%", 0, Baseline},
		{"every key is in the canary at 100%", Buckets, Canary},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rolloutAt(t, Plan{}, tt.ppm)
			for i := range 1000 {
				key := fmt.Sprint(i)
				if got := r.Variant(key); got != tt.want {
					t.Fatalf("Variant(%q) = %v, want %v", key, got, tt.want)
				}
			}
		})
	}
}

func TestMurmur3Vectors(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
	}{
		{"", 0},
		{"1", 2484513939},
		{"hello", 613153351},
		{"test", 0xba6bd213},
		{"The quick brown fox jumps over the lazy dog", 0x2e4ff723},
	}
	for _, tt := range tests {
		if got := murmur3Sum32(tt.in); got != tt.want {
			t.Errorf("murmur3Sum32(%q) = %#x, want %#x", tt.in, got, tt.want)
		}
	}
}

// The vectors below come from Unleash's published client specification
// (gradualRolloutUserId and flexibleRollout with userId stickiness) and
// from the normalized-value test its clients share.
func TestUnleashNormalizedValue(t *testing.T) {
	assert.Equal(t, uint32(73), unleashBucket("gr1", "123"), `unleashBucket("gr1", "123")`)
	assert.Equal(t, uint32(25), unleashBucket("groupX", "999"), `unleashBucket("groupX", "999")`)
}

func TestUnleashClientSpecification(t *testing.T) {
	tests := []struct {
		groupID string
		percent float64
		userID  string
		want    Variant
	}{
		{"AB12A", 100, "123", Canary},
		{"AB12A", 50, "122", Canary},
		{"AB12A", 50, "155", Baseline},
		{"Feature.flexibleRollout.10", 10, "174", Canary},
		{"Feature.flexibleRollout.10", 10, "499", Baseline},
		{"Feature.flexibleRollout.userId.55", 55, "25", Canary},
		{"Feature.flexibleRollout.sessionId.42", 42, "147", Canary},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("user %s at %v%% of group %s", tt.userID, tt.percent, tt.groupID), func(t *testing.T) {
			stages := []Stage{{Percent: tt.percent}}
			if tt.percent < 100 {
				stages = append(stages, Stage{Percent: 100})
			}
			r, err := New(Plan{Salt: tt.groupID, Bucketing: BucketingUnleash, Stages: stages})
			require.NoError(t, err)
			require.NoError(t, r.Start(t.Context()))
			assert.Equal(t, tt.want, r.Variant(tt.userID), "Variant(%q)", tt.userID)
		})
	}
	t.Run("a 0% group admits nobody because buckets start at 1", func(t *testing.T) {
		for i := range 1000 {
			if b := unleashBucket("AB12A", fmt.Sprint(i)); b < 1 || b > 100 {
				t.Fatalf("unleashBucket(AB12A, %d) = %d, want in [1, 100]", i, b)
			}
		}
	})
}

func TestVariantAllocatesNothing(t *testing.T) {
	r := rolloutAt(t, Plan{}, 10_000)
	u := rolloutAt(t, Plan{Bucketing: BucketingUnleash}, 10_000)
	key := "0123456789abcdef"
	if n := testing.AllocsPerRun(100, func() { r.Variant(key) }); n != 0 {
		t.Errorf("Variant allocs = %v, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { u.Variant(key) }); n != 0 {
		t.Errorf("Variant with BucketingUnleash allocs = %v, want 0", n)
	}
}

func TestMurmur3StreamsAcrossWrites(t *testing.T) {
	s := "gr1:0123456789abcdefghij"
	want := murmur3Sum32(s)
	for cut := range len(s) + 1 {
		for cut2 := cut; cut2 <= len(s); cut2++ {
			var m murmur3
			m.writeString(s[:cut])
			m.writeString(s[cut:cut2])
			m.writeString(s[cut2:])
			if got := m.sum(); got != want {
				t.Fatalf("murmur3 of %q written in parts at %d and %d = %#x, want %#x", s, cut, cut2, got, want)
			}
		}
	}
}
