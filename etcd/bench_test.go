package etcd

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ringfence/ringfence/breaker"
	"github.com/ringfence/ringfence/etcd/internal/etcdtest"
	"github.com/ringfence/ringfence/fallback"
	"github.com/ringfence/ringfence/rollout"
)

// BenchmarkModePropagation measures how long a mode change takes from the
// moment one instance calls Set (which commits it to etcd) until the
// Switch of each of 49 other instances, each with its own client, has
// applied it, on loopback. Every (change, instance) pair is timed when
// the instance's OnChange runs, so instances that were quick are counted
// as well as slow ones. It reports the 50th and 99th percentiles over
// those pairs; ns/op includes the write.
func BenchmarkModePropagation(b *testing.B) {
	const fleetSize = 50
	srv := etcdtest.New(b)
	type applied struct {
		at time.Time
		to fallback.Mode
	}
	type member struct {
		sw   *fallback.Switch
		seen chan applied
	}
	fleet := make([]member, fleetSize)
	for i := range fleet {
		store, err := NewModeStore(newClient(b, srv.Endpoints()...), "payments", ModeStoreSettings{Settings: quick()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(store.Close)
		seen := make(chan applied, 1024)
		sw, err := fallback.NewSwitch(b.Context(), "payments", fallback.SwitchSettings{
			Store: store, OnChange: func(c fallback.ModeChange) { seen <- applied{time.Now(), c.To} },
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(sw.Close)
		fleet[i] = member{sw, seen}
	}
	ctx := b.Context()
	var delays []time.Duration
	mode := fallback.ModeAuto
	timeout := time.NewTimer(testWait)
	defer timeout.Stop()
	b.ReportAllocs()
	for b.Loop() {
		mode = fallback.ModeManual + fallback.ModeAuto - mode
		start := time.Now()
		if err := fleet[0].sw.Set(ctx, mode, "bench", "propagation"); err != nil {
			b.Fatal(err)
		}
		timeout.Reset(testWait)
		for _, m := range fleet[1:] {
			for got := false; !got; {
				select {
				case a := <-m.seen:
					if got = a.to == mode; got {
						delays = append(delays, a.at.Sub(start))
					}
				case <-timeout.C:
					b.Fatalf("a switch did not follow within %v", testWait)
				}
			}
		}
		for len(fleet[0].seen) > 0 {
			<-fleet[0].seen
		}
	}
	slices.Sort(delays)
	if n := len(delays); n > 0 {
		b.ReportMetric(float64(delays[n/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(delays[(n*99)/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkSwitchMode compares Switch.Mode with and without an etcd store
// following the fleet.
func BenchmarkSwitchMode(b *testing.B) {
	srv := etcdtest.New(b)
	plain, err := fallback.NewSwitch(b.Context(), "payments", fallback.SwitchSettings{})
	if err != nil {
		b.Fatal(err)
	}
	store, err := NewModeStore(newClient(b, srv.Endpoints()...), "payments", ModeStoreSettings{Settings: quick()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(store.Close)
	fleet, err := fallback.NewSwitch(b.Context(), "payments", fallback.SwitchSettings{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(fleet.Close)
	for _, c := range []struct {
		name string
		sw   *fallback.Switch
	}{{"memory", plain}, {"etcd", fleet}} {
		name, sw := c.name, c.sw
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = sw.Mode()
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_ = sw.Mode()
				}
			})
		})
	}
}

// BenchmarkBreakerDo compares breaker.Do on a breaker with and without a
// BreakerControl attached.
func BenchmarkBreakerDo(b *testing.B) {
	srv := etcdtest.New(b)
	control, err := NewBreakerControl(newClient(b, srv.Endpoints()...), quick())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(control.Close)
	plain, _ := breaker.New(breaker.Settings{Name: "search"})
	attached, _ := breaker.New(breaker.Settings{Name: "search"})
	control.Attach(attached, "backend")
	ok := func(context.Context) (int, error) { return 1, nil }
	ctx := context.Background()
	for _, c := range []struct {
		name string
		br   *breaker.Breaker
	}{{"alone", plain}, {"etcd", attached}} {
		name, br := c.name, c.br
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = breaker.Do(ctx, br, ok)
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, _ = breaker.Do(ctx, br, ok)
				}
			})
		})
	}
}

// BenchmarkRolloutHotPath compares Variant and Observe on a rollout judged
// locally and on one judged on the fleet's evidence.
func BenchmarkRolloutHotPath(b *testing.B) {
	srv := etcdtest.New(b)
	fe, err := NewFleetEvidence(b.Context(), newClient(b, srv.Endpoints()...), "checkout", EvidenceSettings{Settings: quick()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fe.Close() })
	local, _ := rollout.New(rollout.Plan{Name: "checkout"})
	fleet, _ := rollout.New(rollout.Plan{Name: "checkout", Evidence: fe.Merge})
	for _, r := range []*rollout.Rollout{local, fleet} {
		if err := r.Start(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprint("customer-", i)
	}
	// A follower's rollout, resumed from the record the evaluator wrote,
	// reached through RolloutFollower.Rollout on every call.
	writer, err := NewRolloutStore(newClient(b, srv.Endpoints()...), "checkout", quick())
	if err != nil {
		b.Fatal(err)
	}
	judged, _ := rollout.New(rollout.Plan{Name: "checkout", Store: writer})
	if err := judged.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	rf, err := FollowRollout(newClient(b, srv.Endpoints()...), rollout.Plan{Name: "checkout"}, quick())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rf.Close)
	for rf.Rollout().Status().State != rollout.Running {
		select {
		case <-b.Context().Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	b.Run("Variant/follower", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			_ = rf.Rollout().Variant(keys[i&1023])
			i++
		}
	})
	b.Run("Variant/follower/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				_ = rf.Rollout().Variant(keys[i&1023])
				i++
			}
		})
	})
	for _, c := range []struct {
		name string
		r    *rollout.Rollout
	}{{"local", local}, {"etcd", fleet}} {
		name, r := c.name, c.r
		b.Run("Variant/"+name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_ = r.Variant(keys[i&1023])
				i++
			}
		})
		b.Run("Variant/"+name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					_ = r.Variant(keys[i&1023])
					i++
				}
			})
		})
		b.Run("Observe/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r.Observe(rollout.Baseline, nil, time.Millisecond)
			}
		})
		b.Run("Observe/"+name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r.Observe(rollout.Baseline, nil, time.Millisecond)
				}
			})
		})
	}
}

// BenchmarkEvidencePublish measures the etcd load of one instance's
// evidence: the bytes of each write, for a stage that has seen 10,000
// keyed calls. Publish writes at most once per Interval (1 s by default),
// so an instance adds at most one write per second per rollout.
func BenchmarkEvidencePublish(b *testing.B) {
	srv := etcdtest.New(b)
	fe, err := NewFleetEvidence(b.Context(), newClient(b, srv.Endpoints()...), "checkout", EvidenceSettings{Settings: quick()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fe.Close() })
	r, _ := rollout.New(rollout.Plan{Name: "checkout"})
	if err := r.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	for i := range 10_000 {
		key := fmt.Sprint("customer-", i)
		r.ObserveKey(key, r.Variant(key), nil, time.Millisecond)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Observe(rollout.Baseline, nil, time.Millisecond) // a change, so every call writes
		if err := fe.PublishOnce(b.Context(), r.Evidence()); err != nil {
			b.Fatal(err)
		}
	}
	st := fe.Stats()
	if st.Writes > 0 {
		b.ReportMetric(float64(st.Bytes)/float64(st.Writes), "bytes/write")
	}
	b.ReportMetric(1/DefaultPublishInterval.Seconds(), "max-writes/s")
}
