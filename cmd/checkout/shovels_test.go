package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/checkout-backend/checkout/internal/platform/config"
)

// The shovels a region prints carry, to each peer, the transfers addressed to it (to its
// events exchange) and this region's order and catalog events (to its exchange of other regions'
// events), acknowledging only what the peer confirmed; a missing, unknown
// or malformed peer is refused with its name.
func TestShovels_TwoPerPeer_TransfersToItsExchange_SharedEventsToItsRemoteExchange(t *testing.T) {
	cfg := config.Defaults()
	cfg.Checkout.Regions, cfg.Checkout.Region, cfg.Broker.Prefix = []string{"eu", "us", "ap"}, "us", "shop."
	var out strings.Builder
	if err := runShovels(cfg, []string{"eu=amqps://u:p@eu.mq/%2f", "ap=amqps://u:p@ap.mq/%2f"}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want two shovels per peer (eu, ap), got:\n%s", out.String())
	}
	i := 0
	for _, peer := range []string{"eu", "ap"} {
		// The transfers addressed to the peer go to its events exchange; this region's
		// order and catalog events to its exchange of other regions' events.
		for _, route := range [][2]string{{"shop.checkout.to-" + peer, "shop.checkout.events"}, {"shop.checkout.events-to-" + peer, "shop.checkout.remote"}} {
			f := strings.SplitN(lines[i], "'", 5)
			i++
			if len(f) != 5 || f[1] != "shovel."+route[0] {
				t.Fatalf("line %d: %s", i, lines[i-1])
			}
			var def map[string]any
			if err := json.Unmarshal([]byte(f[3]), &def); err != nil {
				t.Fatal(err)
			}
			if def["src-queue"] != route[0] || def["dest-exchange"] != route[1] ||
				def["dest-uri"] != "amqps://u:p@"+peer+".mq/%2f" || def["ack-mode"] != "on-confirm" {
				t.Fatalf("shovel to %s: %v", peer, def)
			}
		}
	}
	for _, bad := range [][]string{
		{"eu=amqps://u:p@eu.mq/%2f"},                                    // ap missing
		{"eu=amqps://u:p@eu.mq/%2f", "ap=amqps://x/", "mars=amqp://m/"}, // not a region
		{"eu=amqps://u:p@eu.mq/%2f", "ap=http://ap/"},                   // not AMQP
		{"eu=amqps://u:p@eu.mq/%2f", "us=amqp://x/", "ap=amqp://y/"},    // itself
	} {
		if err := runShovels(cfg, bad, &strings.Builder{}); err == nil {
			t.Errorf("shovels %v accepted", bad)
		}
	}
}
