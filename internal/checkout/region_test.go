package checkout

import (
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestRegions_OrderIDsCarryTheirHomeRegion: an id made in a region tells that region to
// every other (same REGIONS), is a canonical UUID of version 8 whose ids still sort by
// the time they were made, and an id from before regions (version 7) lives in the first
// region listed. One region: plain UUIDv7, every order local.
func TestRegions_OrderIDsCarryTheirHomeRegion(t *testing.T) {
	names := []string{"eu", "us", "ap"}
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var ids []string
	for i, local := range names {
		r, err := NewRegions(names, local)
		if err != nil {
			t.Fatal(err)
		}
		id := r.NewOrderID(at.Add(time.Duration(i) * time.Millisecond))
		ids = append(ids, id)
		if _, ok := CanonicalID(id); !ok || uuid.MustParse(id).Version() != 8 {
			t.Fatalf("%s made %q, want a canonical version 8 UUID", local, id)
		}
		for _, reader := range names {
			rr, _ := NewRegions(names, reader)
			if home, ok := rr.HomeOf(id); !ok || home != local {
				t.Errorf("%s reads the home of %s's order %s as %q (%v)", reader, local, id, home, ok)
			}
			if rr.IsLocal(id) != (reader == local) {
				t.Errorf("%s: IsLocal(%s's order) = %v", reader, local, rr.IsLocal(id))
			}
		}
		if ms := uuid.MustParse(id).Time(); ms == 0 {
			t.Errorf("%s: no time in %s", local, id)
		}
	}
	if !sort.StringsAreSorted(ids) {
		t.Errorf("ids made 1 ms apart do not sort by time: %v", ids)
	}
	eu, _ := NewRegions(names, "ap")
	if home, ok := eu.HomeOf(uuid.Must(uuid.NewV7()).String()); !ok || home != "eu" {
		t.Errorf("a version 7 id lives in %q (%v), want the first region", home, ok)
	}
	if _, ok := eu.HomeOf("urn:uuid:" + ids[0]); ok {
		t.Error("a non-canonical id has a home")
	}
	two, _ := NewRegions([]string{"eu", "us"}, "eu")
	if _, ok := two.HomeOf(ids[2]); ok { // made by the third region of another deployment
		t.Error("an id naming region 3 of 2 has a home")
	}
	var one Regions
	if id := one.NewOrderID(at); uuid.MustParse(id).Version() != 7 || !one.IsLocal(id) {
		t.Errorf("one region: %s, want a local UUIDv7", id)
	}
	for _, bad := range []struct {
		names []string
		local string
	}{{[]string{"eu", "eu"}, "eu"}, {[]string{"EU"}, "EU"}, {[]string{"eu", "us"}, "ap"}} {
		if _, err := NewRegions(bad.names, bad.local); err == nil {
			t.Errorf("NewRegions(%v, %q) accepted", bad.names, bad.local)
		}
	}
}
