package rollout

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
)

// EvidenceVersion is the version of the Evidence encoding.
const EvidenceVersion = 1

// ErrEvidence is wrapped by every error about Evidence: one that cannot be
// decoded, does not add up, belongs to another rollout or stage, or could
// not be gathered by Plan.Evidence.
var ErrEvidence = errors.New("rollout: unusable evidence")

// ArmEvidence is one variant's counts in one stage.
//
// Samples, Errors, Judged and Slow are kept per key-hash bucket: index b <
// KeyBuckets holds the calls of the keys whose hash falls in bucket b, and
// index KeyBuckets the calls observed without a key. Judged counts the
// calls made since the stage's latency threshold was set, and Slow those of
// them slower than the threshold. Latency is the histogram of every call's
// latency (see LatencyBucketBound). Assigned and Reported are key sketches:
// one bit per slot of the keys Variant assigned to this variant and of the
// keys that reported, for the keys the stage follows (see the package
// documentation, section "Silence").
type ArmEvidence struct {
	Samples  [KeyBuckets + 1]uint64
	Errors   [KeyBuckets + 1]uint64
	Judged   [KeyBuckets + 1]uint64
	Slow     [KeyBuckets + 1]uint64
	Latency  [LatencyBuckets]uint64
	Assigned [SketchWords]uint64
	Reported [SketchWords]uint64
}

// Evidence is a value-type snapshot of one stage's counts, made to be
// summed across processes: each process publishes [Rollout.Evidence], one
// evaluator merges them with [Evidence.Merge] and judges the sum (see
// Plan.Evidence). Counts add, sketches are or-ed, and the judge of merged
// evidence is the judge of the fleet's calls. Its JSON encoding is
// compact, versioned and checked when decoded; its size does not grow with
// traffic or keys.
//
// The zero value is empty evidence of no stage; merging into it adopts the
// other's stage.
type Evidence struct {
	Version int    // EvidenceVersion
	Rollout string // Plan.Name
	Salt    string // Plan.Salt
	Stages  int    // number of stages of the plan
	Stage   int    // index of the stage the counts are of
	PPM     uint32 // the stage's canary share, in parts per million
	// LatencyBucket is one more than the latency bucket above which a call
	// counts as slow, 0 while the stage has no latency threshold. Evidence
	// of different thresholds does not merge; set Judge.LatencyThreshold
	// so that every process of a fleet uses the same.
	LatencyBucket int

	Baseline, Canary ArmEvidence
}

// empty reports whether e names no stage.
func (e *Evidence) empty() bool { return e.Version == 0 && e.Rollout == "" }

// sameStage returns an error wrapping ErrEvidence when o is of another
// rollout, plan or stage than e.
func (e *Evidence) sameStage(o *Evidence) error {
	switch {
	case e.Rollout != o.Rollout || e.Salt != o.Salt:
		return fmt.Errorf("%w: evidence of rollout %q (salt %q), not %q (salt %q)", ErrEvidence, o.Rollout, o.Salt, e.Rollout, e.Salt)
	case e.Stages != o.Stages || e.Stage != o.Stage || e.PPM != o.PPM:
		return fmt.Errorf("%w: evidence of stage %d of %d at %d ppm, not stage %d of %d at %d ppm", ErrEvidence, o.Stage, o.Stages, o.PPM, e.Stage, e.Stages, e.PPM)
	case e.LatencyBucket != o.LatencyBucket && e.LatencyBucket != 0 && o.LatencyBucket != 0:
		return fmt.Errorf("%w: evidence with latency threshold bucket %d, not %d; set Judge.LatencyThreshold for a fleet", ErrEvidence, o.LatencyBucket-1, e.LatencyBucket-1)
	}
	return nil
}

// Merge adds o's counts to e. It returns an error wrapping ErrEvidence,
// and leaves e unchanged, when o is invalid, of another rollout or stage,
// of another latency threshold, or when a count would overflow. Evidence
// without a latency threshold merges with evidence that has one; its slow
// calls are then missing, not wrong, since it judged none.
func (e *Evidence) Merge(o Evidence) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if e.empty() {
		*e = o
		return nil
	}
	if err := e.Validate(); err != nil {
		return err
	}
	if err := e.sameStage(&o); err != nil {
		return err
	}
	out := *e
	out.LatencyBucket = max(e.LatencyBucket, o.LatencyBucket)
	for v, pair := range [2][2]*ArmEvidence{{&out.Baseline, &o.Baseline}, {&out.Canary, &o.Canary}} {
		if err := pair[0].add(pair[1]); err != nil {
			return fmt.Errorf("%w: %v counts: %w", ErrEvidence, Variant(v), err)
		}
	}
	*e = out
	return nil
}

func addAll(dst []uint64, src []uint64) error {
	for i := range dst {
		s, c := bits.Add64(dst[i], src[i], 0)
		if c != 0 {
			return errors.New("count overflows")
		}
		dst[i] = s
	}
	return nil
}

func (a *ArmEvidence) add(o *ArmEvidence) error {
	for _, p := range [][2][]uint64{
		{a.Samples[:], o.Samples[:]}, {a.Errors[:], o.Errors[:]},
		{a.Judged[:], o.Judged[:]}, {a.Slow[:], o.Slow[:]}, {a.Latency[:], o.Latency[:]},
	} {
		if err := addAll(p[0], p[1]); err != nil {
			return err
		}
	}
	for i := range a.Assigned {
		a.Assigned[i] |= o.Assigned[i]
		a.Reported[i] |= o.Reported[i]
	}
	return nil
}

// Validate checks that e is evidence this package can judge: the right
// version, a stage inside its plan, and counts that add up (no bucket with
// more errors or judged calls than calls, or more slow calls than judged
// ones, and a latency histogram holding no more calls than were made). It
// returns an error wrapping ErrEvidence naming the first problem.
func (e *Evidence) Validate() error {
	switch {
	case e.Version != EvidenceVersion:
		return fmt.Errorf("%w: version %d, want %d", ErrEvidence, e.Version, EvidenceVersion)
	case e.Stages < 1 || e.Stage < 0 || e.Stage >= e.Stages:
		return fmt.Errorf("%w: stage %d of %d", ErrEvidence, e.Stage, e.Stages)
	case e.PPM == 0 || e.PPM > Buckets:
		return fmt.Errorf("%w: canary share of %d ppm", ErrEvidence, e.PPM)
	case e.LatencyBucket < 0 || e.LatencyBucket > histBuckets:
		return fmt.Errorf("%w: latency threshold bucket %d", ErrEvidence, e.LatencyBucket)
	}
	for v, a := range [2]*ArmEvidence{&e.Baseline, &e.Canary} {
		var total, hist uint64
		for b := range a.Samples {
			n := a.Samples[b]
			if e.LatencyBucket == 0 && a.Judged[b] != 0 {
				return fmt.Errorf("%w: %v has judged calls without a latency threshold", ErrEvidence, Variant(v))
			}
			if a.Errors[b] > n || a.Judged[b] > n || a.Slow[b] > a.Judged[b] {
				return fmt.Errorf("%w: %v bucket %d has %d calls, %d errors, %d judged and %d slow", ErrEvidence, Variant(v), b, n, a.Errors[b], a.Judged[b], a.Slow[b])
			}
			var c uint64
			total, c = bits.Add64(total, n, 0)
			if c != 0 {
				return fmt.Errorf("%w: %v calls overflow", ErrEvidence, Variant(v))
			}
		}
		for _, n := range a.Latency {
			var c uint64
			hist, c = bits.Add64(hist, n, 0)
			if c != 0 || hist > total {
				return fmt.Errorf("%w: %v latency histogram holds more than its %d calls", ErrEvidence, Variant(v), total)
			}
		}
	}
	return nil
}

// evidenceJSON is the wire form of Evidence: counts as arrays of numbers,
// sketches as base64 of their little-endian words.
type evidenceJSON struct {
	Version       int     `json:"v"`
	Rollout       string  `json:"rollout"`
	Salt          string  `json:"salt"`
	Stages        int     `json:"stages"`
	Stage         int     `json:"stage"`
	PPM           uint32  `json:"ppm"`
	LatencyBucket int     `json:"lat"`
	Baseline      armJSON `json:"baseline"`
	Canary        armJSON `json:"canary"`
}

type armJSON struct {
	Samples  []uint64 `json:"n"`
	Errors   []uint64 `json:"e"`
	Judged   []uint64 `json:"j"`
	Slow     []uint64 `json:"s"`
	Latency  []uint64 `json:"h"`
	Assigned string   `json:"a"`
	Reported string   `json:"r"`
}

func sketchString(w *[SketchWords]uint64) string {
	var b [SketchWords * 8]byte
	for i, x := range w {
		binary.LittleEndian.PutUint64(b[i*8:], x)
	}
	return base64.RawStdEncoding.EncodeToString(b[:])
}

func parseSketch(s string, w *[SketchWords]uint64) error {
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	if len(b) != SketchWords*8 {
		return fmt.Errorf("sketch of %d bytes, want %d", len(b), SketchWords*8)
	}
	for i := range w {
		w[i] = binary.LittleEndian.Uint64(b[i*8:])
	}
	return nil
}

func (a *ArmEvidence) wire() armJSON {
	return armJSON{Samples: a.Samples[:], Errors: a.Errors[:], Judged: a.Judged[:], Slow: a.Slow[:],
		Latency: a.Latency[:], Assigned: sketchString(&a.Assigned), Reported: sketchString(&a.Reported)}
}

func (a *ArmEvidence) fromWire(w armJSON) error {
	for _, f := range []struct {
		name string
		dst  []uint64
		src  []uint64
	}{{"n", a.Samples[:], w.Samples}, {"e", a.Errors[:], w.Errors}, {"j", a.Judged[:], w.Judged},
		{"s", a.Slow[:], w.Slow}, {"h", a.Latency[:], w.Latency}} {
		if len(f.src) != len(f.dst) {
			return fmt.Errorf("field %q has %d counts, want %d", f.name, len(f.src), len(f.dst))
		}
		copy(f.dst, f.src)
	}
	if err := parseSketch(w.Assigned, &a.Assigned); err != nil {
		return fmt.Errorf("field \"a\": %w", err)
	}
	if err := parseSketch(w.Reported, &a.Reported); err != nil {
		return fmt.Errorf("field \"r\": %w", err)
	}
	return nil
}

// MarshalJSON encodes e compactly: about 3 KB with few calls, at most
// about 12 KB, whatever the traffic.
func (e Evidence) MarshalJSON() ([]byte, error) {
	return json.Marshal(evidenceJSON{Version: e.Version, Rollout: e.Rollout, Salt: e.Salt, Stages: e.Stages,
		Stage: e.Stage, PPM: e.PPM, LatencyBucket: e.LatencyBucket, Baseline: e.Baseline.wire(), Canary: e.Canary.wire()})
}

// UnmarshalJSON decodes evidence and validates it (see Validate); a
// document that is malformed, of another version or does not add up is an
// error wrapping ErrEvidence, and e is left unchanged.
func (e *Evidence) UnmarshalJSON(b []byte) error {
	var w evidenceJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %v", ErrEvidence, err)
	}
	if w.Version != EvidenceVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrEvidence, w.Version, EvidenceVersion)
	}
	out := Evidence{Version: w.Version, Rollout: w.Rollout, Salt: w.Salt, Stages: w.Stages, Stage: w.Stage,
		PPM: w.PPM, LatencyBucket: w.LatencyBucket}
	if err := out.Baseline.fromWire(w.Baseline); err != nil {
		return fmt.Errorf("%w: baseline: %v", ErrEvidence, err)
	}
	if err := out.Canary.fromWire(w.Canary); err != nil {
		return fmt.Errorf("%w: canary: %v", ErrEvidence, err)
	}
	if err := out.Validate(); err != nil {
		return err
	}
	*e = out
	return nil
}
