package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

type groupReq struct {
	key, id string
	done    chan error
}

// While a batch is in flight the queue fills and the next batch takes it all, except
// a second request with a key the batch holds: it waits for the batch after. Requests
// left at close are rejected, and nothing is taken after it.
func TestGroup_BatchesWhatWaits_NeverOneKeyTwice(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var batches [][]string
	release := make(chan struct{})
	g := newGroup(groupOptions{maxSize: 10, maxWait: time.Millisecond, workers: 1},
		func(r *groupReq) string { return r.key },
		func(rs []*groupReq) {
			mu.Lock()
			first := len(batches) == 0
			var ids []string
			for _, r := range rs {
				ids = append(ids, r.id)
			}
			batches = append(batches, ids)
			mu.Unlock()
			if first {
				<-release
			}
			for _, r := range rs {
				r.done <- nil
			}
		},
		func(r *groupReq) { r.done <- errGroupBusy })
	submit := func(key, id string) *groupReq {
		r := &groupReq{key: key, id: id, done: make(chan error, 1)}
		if !g.submit(r) {
			t.Fatalf("%s refused", id)
		}
		return r
	}
	first := submit("a", "a1")
	for !func() bool { mu.Lock(); defer mu.Unlock(); return len(batches) == 1 }() {
		time.Sleep(time.Millisecond)
	}
	// The first batch is in flight: these queue.
	rest := []*groupReq{submit("a", "a2"), submit("b", "b1"), submit("a", "a3"), submit("c", "c1"), submit("b", "b2")}
	close(release)
	for _, r := range append(rest, first) {
		if err := <-r.done; err != nil {
			t.Fatalf("%s: %v", r.id, err)
		}
	}
	want := [][]string{{"a1"}, {"a2", "b1", "c1"}, {"a3", "b2"}}
	mu.Lock()
	got := batches
	mu.Unlock()
	if !slices.EqualFunc(got, want, slices.Equal[[]string]) {
		t.Fatalf("batches %v, want %v", got, want)
	}
	g.close()
	if g.submit(&groupReq{key: "z", id: "late", done: make(chan error, 1)}) {
		t.Fatal("a request was taken after close")
	}
}

// A batch that fails as a whole is run again call by call, so the bad call fails alone.
func TestBatched_ABadCallFailsAlone(t *testing.T) {
	t.Parallel()
	bad := errors.New("invalid input syntax")
	var mu sync.Mutex
	var sizes []int
	release := make(chan struct{})
	b := newBatched(groupOptions{maxSize: 10, workers: 1}, func(s string) string { return s },
		func(ctx context.Context, ins []string) ([]string, []error, error) {
			mu.Lock()
			sizes = append(sizes, len(ins))
			n := len(sizes)
			mu.Unlock()
			if n == 1 {
				<-release // hold the only slot while the rest queue
			}
			out := make([]string, len(ins))
			for i, in := range ins {
				switch in {
				case "bad":
					return nil, nil, bad
				}
				out[i] = "ok " + in
			}
			return out, make([]error, len(ins)), nil
		})
	defer b.close()
	ctx := context.Background()
	do := func(ins ...string) map[string]error {
		errs := map[string]error{}
		var wg sync.WaitGroup
		var emu sync.Mutex
		for _, in := range ins {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := b.do(ctx, in)
				if err == nil && out != "ok "+in {
					err = fmt.Errorf("answered %q", out)
				}
				emu.Lock()
				errs[in] = err
				emu.Unlock()
			}()
		}
		wg.Wait()
		return errs
	}
	go func() {
		for {
			mu.Lock()
			n := len(sizes)
			mu.Unlock()
			if n > 0 {
				time.Sleep(20 * time.Millisecond) // let the others queue behind the first
				close(release)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	errs := do("first", "x", "bad", "y", "z")
	for _, in := range []string{"first", "x", "y", "z"} {
		if errs[in] != nil {
			t.Errorf("%s beside a bad call: %v", in, errs[in])
		}
	}
	if !errors.Is(errs["bad"], bad) {
		t.Errorf("the bad call: %v", errs["bad"])
	}
	mu.Lock()
	batched := slices.Max(sizes) > 1
	mu.Unlock()
	if !batched {
		t.Fatalf("batch sizes %v: the calls never shared a batch", sizes)
	}
}
