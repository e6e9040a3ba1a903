package webhook

import (
	"testing"
	"time"
)

func TestRetry_Next(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	r := Retry{Base: 10 * time.Second, MaxAge: 24 * time.Hour}
	t.Run("DoublesWithJitterBetweenHalfAndAll", func(t *testing.T) {
		for n, step := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 20: 6 * time.Hour} {
			lo, _ := r.Next(n, created, created, 0)
			hi, _ := r.Next(n, created, created, 1)
			if lo.Sub(created) != step/2 || hi.Sub(created) != step {
				t.Errorf("attempt %d: waits %s..%s, want %s..%s", n, lo.Sub(created), hi.Sub(created), step/2, step)
			}
		}
	})
	t.Run("DeadExactlyAtMaxAge_NeverScheduledPastIt", func(t *testing.T) {
		// Fail every attempt at its due time, with the longest waits: the attempts end
		// with one exactly at created+MaxAge, whose failure is final.
		now, n := created, 1
		for {
			next, dead := r.Next(n, created, now, 1)
			if dead {
				break
			}
			if next.After(created.Add(r.MaxAge)) {
				t.Fatalf("attempt %d scheduled at %s, past the max age", n+1, next)
			}
			now, n = next, n+1
			if n > 100 {
				t.Fatal("never dead")
			}
		}
		if !now.Equal(created.Add(r.MaxAge)) {
			t.Fatalf("the last attempt was at %s after the event, want exactly %s", now.Sub(created), r.MaxAge)
		}
	})
	t.Run("MaxAttempts", func(t *testing.T) {
		if _, dead := (Retry{Base: time.Second, MaxAge: time.Hour, MaxAttempts: 3}).Next(3, created, created, 0); !dead {
			t.Fatal("alive after its last attempt")
		}
	})
}
