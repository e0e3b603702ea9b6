package rollout

import "time"

// Variant returns the variant key gets now. Assignment is deterministic
// (see the package documentation, section "Assignment"), so the same key
// gets the same variant in every process. In a shadow stage Variant still
// reports Canary for the keys assigned to it; see [Rollout.Shadow].
//
// Variant also notes, in a bounded sketch, which keys it assigned, so that
// the judge can tell a canary key that never reports (see the package
// documentation, section "Silence"). It is lock-free and allocates
// nothing.
func (r *Rollout) Variant(key string) Variant {
	ppm := uint32(r.route.Load())
	switch {
	case ppm == 0:
		return Baseline
	case ppm >= Buckets:
		return Canary
	}
	// assign, written out: Variant is the hottest path.
	h := r.p.hash.sum(key)
	var pos uint32
	if r.p.Bucketing == BucketingUnleash {
		pos = unleashPosition(r.p.Salt, key)
	} else {
		pos = bucket(h)
	}
	if s := r.stats.Load(); s.ppm == ppm {
		if v, ok := s.tracked(pos); ok {
			setBit(&s.keys[v].assigned, h)
		}
	}
	if pos < ppm {
		return Canary
	}
	return Baseline
}

// unleashPosition is the assignment position of key under
// BucketingUnleash.
func unleashPosition(salt, key string) uint32 { return (unleashBucket(salt, key) - 1) * 10_000 }

// assign returns the variant of key at ppm, with hash h, and its
// assignment position, and notes the key in the stage's sketch.
func (r *Rollout) assign(ppm uint32, key string, h uint64) (Variant, uint32, *stats) {
	pos := r.position(key, h)
	s := r.stats.Load()
	if s.ppm == ppm {
		s.assigned(pos, h)
	}
	if pos < ppm {
		return Canary, pos, s
	}
	return Baseline, pos, s
}

// position returns the key's assignment position in [0, Buckets): the key
// is in the canary when it is below the stage's ppm.
func (r *Rollout) position(key string, h uint64) uint32 {
	if r.p.Bucketing == BucketingUnleash {
		return unleashPosition(r.p.Salt, key)
	}
	return bucket(h)
}

// Shadow reports whether the current stage is a dark launch, in which the
// canary's results must be compared and discarded, never served.
func (r *Rollout) Shadow() bool { return r.route.Load()&shadowBit != 0 }

// ObserveKey records one outcome of variant v for key in the current
// stage: err is nil on success, latency is how long the call took. [Do]
// calls it; callers that dispatch themselves, with Variant, call it after
// each call. The judge counts a key's calls together, so that its tests
// stay valid when calls of one key resemble each other more than calls of
// different keys (see the package documentation, section "The judge"),
// and compares the keys that report with the keys Variant assigned.
// Observe every call of both variants, or the same sample of each.
// Observations of values other than Baseline and Canary are ignored.
// ObserveKey is lock-free and allocates nothing.
func (r *Rollout) ObserveKey(key string, v Variant, err error, latency time.Duration) {
	if v > Canary {
		return
	}
	h := r.p.hash.sum(key)
	var pos uint32
	if r.p.Bucketing == BucketingUnleash {
		pos = unleashPosition(r.p.Salt, key)
	} else {
		pos = bucket(h)
	}
	r.stats.Load().observeKey(v, pos, h, err != nil, latency)
}

// Observe records one outcome of variant v for the current stage without
// its key: err is nil on success, latency is how long the call took. It is
// lock-free and allocates nothing.
//
// An unkeyed observation is request-level: the judge treats it as
// independent of every other, which holds only when each call is assigned
// on its own (the key is the request). When keys are hosts, tenants or
// users, prefer [Rollout.ObserveKey]; calls of one host share its error
// rate, and a judge that does not know it rolls back healthy canaries far
// more often than Judge.Alpha. Without keys, silence is judged by the
// canary's share of calls, which needs every call of both variants
// observed alike. Observations of values other than Baseline and Canary
// are ignored.
func (r *Rollout) Observe(v Variant, err error, latency time.Duration) {
	if v > Canary {
		return
	}
	r.stats.Load().observe(v, KeyBuckets, err != nil, latency)
}

// Evidence returns a snapshot of this process's counts of the current
// stage, to be merged with other processes' (see [Evidence] and
// Plan.Evidence). It is not an atomic snapshot of concurrent
// observations, but its counts always add up (see Evidence.Validate).
func (r *Rollout) Evidence() Evidence {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.localEvidence(r.stats.Load())
}

// localEvidence reads s as the evidence of the current stage. r.mu must
// be held.
func (r *Rollout) localEvidence(s *stats) Evidence {
	e := Evidence{Version: EvidenceVersion, Rollout: r.p.Name, Salt: r.p.Salt, Stages: len(r.p.stages),
		Stage: r.stage, PPM: r.p.stages[r.stage].ppm, LatencyBucket: int(s.lat.Load())}
	s.read(Baseline, &e.Baseline)
	s.read(Canary, &e.Canary)
	return e
}

// newStats returns the counters of a stage at ppm, carrying the baseline
// latencies of prev (the counters of the stage before, if any) and setting
// the latency threshold when it is known.
func (r *Rollout) newStats(ppm uint32, prev *stats) *stats {
	s := newStats(ppm)
	if prev != nil {
		s.carried = prev.carried
		var a ArmEvidence
		prev.read(Baseline, &a)
		for i, n := range a.Latency {
			s.carried[i] += n
		}
	}
	r.learnLatency(s)
	return s
}

// learnLatency sets s's latency threshold once it is known: from
// Judge.LatencyThreshold, or from the baseline's LatencyQuantile once the
// baseline has LatencyMinBaseline observations over this and earlier
// stages. s must not be shared yet, or r.mu must be held.
func (r *Rollout) learnLatency(s *stats) {
	if s.lat.Load() != 0 || s.ppm == 0 || s.ppm >= Buckets {
		return
	}
	j := r.p.Judge
	if j.LatencyThreshold > 0 {
		s.setLatency(histIndex(j.LatencyThreshold))
		return
	}
	hist := s.carried
	var total uint64
	for i := range s.shards {
		c := &s.shards[i].v[Baseline]
		for k := range c.hist {
			hist[k] += c.hist[k].Load()
		}
	}
	for _, n := range hist {
		total += n
	}
	if total < uint64(j.LatencyMinBaseline) {
		return
	}
	if i, ok := quantileBucket(&hist, j.LatencyQuantile); ok {
		s.setLatency(i)
	}
}
