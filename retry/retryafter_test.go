package retry

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{
		"0", "120", " 7 ", "-1", "+3", "1.5", "", "   ", "soon", "0x10",
		"99999999999999999999", "9223372036",
		"Wed, 21 Oct 2015 07:28:00 GMT",
		"Wednesday, 21-Oct-15 07:28:00 GMT",
		"Wed Oct 21 07:28:00 2015",
		"Wed, 21 Oct 2015 07:28:00 PST",
		"Wed, 32 Oct 2015 07:28:00 GMT",
	} {
		f.Add(s)
	}
	now := time.Date(2015, 10, 21, 7, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := parseRetryAfter(v, now)
		if d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v, want a non-negative delay", v, d)
		}
		if !ok && d != 0 {
			t.Fatalf("parseRetryAfter(%q) = %v, false; want 0 when not ok", v, d)
		}
		s := strings.TrimSpace(v)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && isDigits(s) {
			want := maxRetryAfter
			if n <= int64(maxRetryAfter/time.Second) {
				want = time.Duration(n) * time.Second
			}
			if !ok || d != want {
				t.Fatalf("parseRetryAfter(%q) = %v, %v; want %v, true", v, d, ok, want)
			}
			return
		}
		if isDigits(s) {
			if !ok || d != maxRetryAfter {
				t.Fatalf("parseRetryAfter(%q) = %v, %v; want the cap, true", v, d, ok)
			}
			return
		}
		date, err := http.ParseTime(s)
		if ok != (err == nil) {
			t.Fatalf("parseRetryAfter(%q) ok = %v, want %v (http.ParseTime error %v)", v, ok, err == nil, err)
		}
		if ok && d != max(date.Sub(now), 0) {
			t.Fatalf("parseRetryAfter(%q) = %v, want %v", v, d, max(date.Sub(now), 0))
		}
	})
}

func TestParseRetryAfterReadsItsOwnDates(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, d := range []time.Duration{0, time.Second, 90 * time.Second, 36 * time.Hour} {
		for _, layout := range []string{http.TimeFormat, time.RFC850, time.ANSIC} {
			v := now.Add(d).Format(layout)
			got, ok := parseRetryAfter(v, now)
			if !ok || got != d {
				t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, true", v, got, ok, d)
			}
		}
	}
}
