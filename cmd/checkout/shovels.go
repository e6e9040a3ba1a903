package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/platform/config"
	"github.com/checkout-backend/checkout/workers"
)

// runShovels prints the rabbitmqctl commands that link this region's broker to each
// peer's: two dynamic shovels per peer (workers.ShovelRoutes), one from the queue of
// the transfers this region addresses to that peer to the peer's events exchange, one
// from the queue of this region's order and catalog events to the peer's exchange of
// other regions' events. args are peer=AMQP-URI pairs, one per other region of REGIONS
// (the URI names the peer's virtual host: amqps://user:pass@host/%2f).
func runShovels(cfg config.Config, args []string, out io.Writer) error {
	regions, err := checkout.NewRegions(cfg.Checkout.Regions, cfg.Checkout.Region)
	if err != nil {
		return fmt.Errorf("config: REGION, REGIONS: %w", err)
	}
	peers := regions.Peers()
	if len(peers) == 0 {
		return fmt.Errorf("shovels: REGIONS lists no region but this one (%q): there is nothing to link", regions.Local)
	}
	uris := map[string]string{}
	for _, a := range args {
		peer, uri, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(uri, "amqp://") && !strings.HasPrefix(uri, "amqps://") {
			return fmt.Errorf("shovels: %q is not peer=amqp(s)://user:password@host/vhost", a)
		}
		uris[peer] = uri
	}
	topo := broker.Topology{Prefix: cfg.Broker.Prefix}
	for _, peer := range peers {
		uri, ok := uris[peer]
		if !ok {
			return fmt.Errorf("shovels: no AMQP URI for region %s (give %s=amqps://user:password@host/%%2f)", peer, peer)
		}
		for _, route := range workers.ShovelRoutes(topo, peer) {
			name, def := topo.Shovel(route.Queue, route.Exchange, uri)
			fmt.Fprintf(out, "rabbitmqctl set_parameter shovel '%s' '%s'\n", name, def)
		}
	}
	for peer := range uris {
		if !slices.Contains(peers, peer) {
			return fmt.Errorf("shovels: %s is not another region of REGIONS (%s)", peer, strings.Join(peers, ","))
		}
	}
	return nil
}
