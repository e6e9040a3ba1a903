package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/checkout-backend/checkout/internal/platform/config"
)

// The shovels a region prints carry what it addresses to each peer, and only that, to
// the peer's exchange, acknowledging only what the peer confirmed; a missing, unknown
// or malformed peer is refused with its name.
func TestShovels_OnePerPeer_FromItsQueueToThePeersExchange(t *testing.T) {
	cfg := config.Defaults()
	cfg.Checkout.Regions, cfg.Checkout.Region, cfg.Broker.Prefix = []string{"eu", "us", "ap"}, "us", "shop."
	var out strings.Builder
	if err := runShovels(cfg, []string{"eu=amqps://u:p@eu.mq/%2f", "ap=amqps://u:p@ap.mq/%2f"}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one shovel per peer (eu, ap), got:\n%s", out.String())
	}
	for i, peer := range []string{"eu", "ap"} {
		f := strings.SplitN(lines[i], "'", 5)
		if len(f) != 5 || f[1] != "shovel.shop.checkout.to-"+peer {
			t.Fatalf("line %d: %s", i, lines[i])
		}
		var def map[string]any
		if err := json.Unmarshal([]byte(f[3]), &def); err != nil {
			t.Fatal(err)
		}
		if def["src-queue"] != "shop.checkout.to-"+peer || def["dest-exchange"] != "shop.checkout.events" ||
			def["dest-uri"] != "amqps://u:p@"+peer+".mq/%2f" || def["ack-mode"] != "on-confirm" {
			t.Fatalf("shovel to %s: %v", peer, def)
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
