package main

import (
	"context"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// TestWriteProbe_CountsTwoWritableNodes_NotAPrimaryAndItsStandby: the chaos run's
// split-brain probe counts the rounds in which two nodes took a write. Two independent
// servers (both primaries) are counted in every round; a primary and its hot standby in
// none.
func TestWriteProbe_CountsTwoWritableNodes_NotAPrimaryAndItsStandby(t *testing.T) {
	testutil.Slow(t) // private PostgreSQL nodes
	t.Parallel()
	ctx := context.Background()
	primary := node.StartPostgres(t, node.PostgresOptions{})
	standby := node.StartPostgres(t, node.PostgresOptions{StandbyOf: primary})
	other := node.StartPostgres(t, node.PostgresOptions{})
	for _, tc := range []struct {
		name  string
		urls  []string
		split bool
	}{
		{"a primary and its standby", []string{primary.URL(), standby.URL()}, false},
		{"two primaries", []string{primary.URL(), other.URL()}, true},
	} {
		if tc.split { // the table exists on the primary already; make it on the other one
			p, err := startWriteProbe(ctx, []string{other.URL()})
			if err != nil {
				t.Fatal(err)
			}
			p.result()
		}
		p, err := startWriteProbe(ctx, tc.urls)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		rounds, two, _ := p.result()
		if rounds < 3 {
			t.Fatalf("%s: %d rounds in a second", tc.name, rounds)
		}
		if (two > 0) != tc.split {
			t.Fatalf("%s: %d of %d rounds with two writable nodes", tc.name, two, rounds)
		}
	}
}
