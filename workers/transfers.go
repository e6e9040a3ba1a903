package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
)

// TransferConsumer is the consumer of stock transfers addressed to this region: the
// requests it is asked to grant and the grants it credits.
const TransferConsumer = "transfers"

// OutboundConsumer names the queue that holds the transfers this region addresses to
// peer until RabbitMQ's shovel moves them to the peer's events exchange
// (broker.Topology.Shovel); nothing of this process consumes it.
func OutboundConsumer(peer string) string { return "to-" + peer }

// EventsOutboundConsumer names the queue that holds this region's order and catalog
// events for peer until a shovel moves them to the peer's exchange of other regions'
// events (broker.Topology.RemoteExchange), where its partner webhooks, subscriptions
// and catalog replica take them.
func EventsOutboundConsumer(peer string) string { return "events-to-" + peer }

// CatalogConsumer applies the other regions' catalog changes here.
const CatalogConsumer = "catalog"

// SharedTypes are the events of a region that every other region gets: its order events
// (for partners and subscribers everywhere) and its catalog changes.
var SharedTypes = append(append([]string{}, event.OrderTypes...), event.ProductUpserted)

// RegionConsumers is the part of the broker topology a region of a deployment of
// several adds: its transfer consumer, bound to what is addressed to it; its catalog
// replica, bound to the other regions' catalog changes only; and two queues per peer:
// the transfers addressed to that peer, and this region's order and catalog events
// (bound on this region's exchange only). Each region's shovels take only from the
// latter two, so a transfer crosses to the region it is addressed to and never back,
// and a shared event reaches every other region once and goes no further.
func RegionConsumers(regions checkout.Regions) []broker.Consumer {
	if len(regions.Names) < 2 {
		return nil
	}
	local := regions.Local
	out := []broker.Consumer{{Name: TransferConsumer, Types: []string{
		event.AddressedTo(event.StockTransferRequested, local), event.AddressedTo(event.StockTransferGranted, local)}}}
	for _, peer := range regions.Peers() {
		out = append(out, broker.Consumer{Name: OutboundConsumer(peer), Types: []string{
			event.AddressedTo(event.StockTransferRequested, peer), event.AddressedTo(event.StockTransferGranted, peer)}},
			broker.Consumer{Name: EventsOutboundConsumer(peer), Types: SharedTypes})
	}
	out = append(out, broker.Consumer{Name: CatalogConsumer, Types: []string{event.ProductUpserted}, RemoteOnly: true})
	return out
}

// ShovelRoute is what one shovel carries: the messages of Queue on this region's broker
// to Exchange on the peer's.
type ShovelRoute struct{ Queue, Exchange string }

// ShovelRoutes are the two shovels from this region to peer: the transfers addressed to
// it, to its events exchange; this region's order and catalog events, to its exchange
// of other regions' events (never its events exchange: its payment worker would take
// them).
func ShovelRoutes(topo broker.Topology, peer string) []ShovelRoute {
	return []ShovelRoute{
		{topo.Queue(OutboundConsumer(peer)), topo.Exchange()},
		{topo.Queue(EventsOutboundConsumer(peer)), topo.RemoteExchange()},
	}
}

// TransferWorker grants the requests addressed to this region and credits the grants.
type TransferWorker struct {
	store  checkout.TransferStore
	keep   int
	logger *slog.Logger
}

// NewTransferWorker returns the transfer handlers; a grant keeps keep units of the SKU
// here (the rebalancer's low mark: a region never gives itself short).
func NewTransferWorker(store checkout.TransferStore, keep int, logger *slog.Logger) *TransferWorker {
	if logger == nil {
		logger = slog.Default()
	}
	return &TransferWorker{store: store, keep: keep, logger: logger}
}

// Handle grants a stock.transfer_requested or credits a stock.transfer_granted. The
// store makes both idempotent (by transfer id), so a redelivery changes nothing; a
// payload that is not addressed to this region is dead-lettered.
func (w *TransferWorker) Handle(ctx context.Context, env event.Envelope) error {
	var p event.TransferPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		return broker.Permanent(fmt.Errorf("transfer event %s: %w", env.ID, err))
	}
	switch env.Type {
	case event.StockTransferRequested:
		g, err := w.store.Grant(ctx, p, w.keep)
		if err != nil {
			return permanentIfDomain(err)
		}
		w.logger.InfoContext(ctx, "stock transfer granted", "transferId", p.TransferID, "sku", p.SKU, "to", p.To, "asked", p.Quantity, "given", g.Quantity)
	case event.StockTransferGranted:
		credited, err := w.store.Credit(ctx, p)
		if err != nil {
			return permanentIfDomain(err)
		}
		if credited {
			w.logger.InfoContext(ctx, "stock transfer credited", "transferId", p.TransferID, "sku", p.SKU, "from", p.From, "quantity", p.Quantity)
		}
	default:
		return broker.Permanent(fmt.Errorf("transfer consumer: unexpected event type %q", env.Type))
	}
	return nil
}

// permanentIfDomain dead-letters what no retry can mend (a transfer not addressed here,
// a SKU this region does not know); anything else is retried.
func permanentIfDomain(err error) error {
	if _, ok := checkout.AsError(err); ok {
		return broker.Permanent(err)
	}
	return err
}

// CatalogWorker applies the other regions' catalog changes to this region's copy.
type CatalogWorker struct {
	replica catalog.Replica
	logger  *slog.Logger
}

// NewCatalogWorker returns the catalog replica's handler.
func NewCatalogWorker(replica catalog.Replica, logger *slog.Logger) *CatalogWorker {
	if logger == nil {
		logger = slog.Default()
	}
	return &CatalogWorker{replica: replica, logger: logger}
}

// Handle applies one product.upserted of another region (a change older than what is
// here is skipped: the newer one was applied, or made here).
func (w *CatalogWorker) Handle(ctx context.Context, env event.Envelope) error {
	var p event.ProductPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		return broker.Permanent(fmt.Errorf("catalog event %s: %w", env.ID, err))
	}
	applied, err := w.replica.ApplyProduct(ctx, p)
	if err != nil {
		return permanentIfDomain(err)
	}
	if applied {
		w.logger.InfoContext(ctx, "catalog change of another region applied", "sku", p.SKU, "region", p.Region)
	}
	return nil
}

// Run consumes the catalog queue until ctx ends.
func (w *CatalogWorker) Run(ctx context.Context, b *broker.Broker, opt broker.ConsumeOptions) error {
	return b.Consume(ctx, CatalogConsumer, opt, w.Handle)
}

// Run consumes the transfer queue until ctx ends.
func (w *TransferWorker) Run(ctx context.Context, b *broker.Broker, opt broker.ConsumeOptions) error {
	return b.Consume(ctx, TransferConsumer, opt, w.Handle)
}

// RebalancerOptions configure a rebalancer.
type RebalancerOptions struct {
	Interval time.Duration // how often it looks for SKUs short here (default 1s)
	checkout.AskOptions
	Logger *slog.Logger
}

// Rebalancer asks the other regions for stock of the SKUs this region is short of.
type Rebalancer struct {
	store checkout.TransferStore
	peers []string
	opt   RebalancerOptions
}

// NewRebalancer returns the rebalancer of a region whose peers are the other regions.
func NewRebalancer(store checkout.TransferStore, peers []string, opt RebalancerOptions) (*Rebalancer, error) {
	if len(peers) == 0 {
		return nil, errors.New("workers: a rebalancer needs another region to ask")
	}
	if opt.Interval <= 0 {
		opt.Interval = time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &Rebalancer{store: store, peers: peers, opt: opt}, nil
}

// Run asks every Interval until ctx ends.
func (r *Rebalancer) Run(ctx context.Context) error {
	t := time.NewTicker(r.opt.Interval)
	defer t.Stop()
	for {
		asked, err := r.store.Ask(ctx, r.peers, r.opt.AskOptions)
		if err != nil && ctx.Err() == nil {
			r.opt.Logger.Warn("rebalancing round failed", "error", err)
		}
		for _, a := range asked {
			r.opt.Logger.InfoContext(ctx, "stock asked for", "transferId", a.TransferID, "sku", a.SKU, "of", a.From, "quantity", a.Quantity, "soldOut", a.SoldOut)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
