package window

import (
	"testing"
	"time"
)

func BenchmarkAdd(b *testing.B) {
	w := New(time.Minute, 10, 3)
	b.ReportAllocs()
	for b.Loop() {
		w.Add(0, 1)
	}
}

func BenchmarkAddParallel(b *testing.B) {
	w := New(time.Minute, 10, 3)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Add(0, 1)
		}
	})
}

func BenchmarkSum(b *testing.B) {
	w := New(time.Minute, 10, 3)
	w.Add(0, 1)
	b.ReportAllocs()
	for b.Loop() {
		_ = w.Sum(0)
	}
}
