package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/platform/config"
	"github.com/checkout-backend/checkout/workers"
)

// amqpPrefix is the AMQP_PREFIX of the service the bench starts: the bench database's
// name, so that its exchange and queues are its own. With the default names it would
// share the payment queue with any other service on the broker (`make run`), which
// would take half of the bench's order.placed messages, find no such order in its own
// database and dead-letter them.
func amqpPrefix(benchDB string) string { return benchDB + "." }

// resetBroker deletes the exchange and queues of the service whose environment is
// childEnv (the service declares them again at start), so nothing left by an earlier
// run (a killed one) reaches a fresh database. The names are derived as `checkout
// serve` derives them.
func resetBroker(ctx context.Context, childEnv []string) error {
	b, err := benchBroker(childEnv, true)
	if err != nil {
		return err
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return b.Delete(ctx)
}

// benchBroker is a broker client on the topology of the service whose environment is
// childEnv: the saga's and the partner webhooks' queues, and the analytics consumer's
// when the service runs it, or always with every (to delete them all). It only
// observes: a client that declared its topology would bind the webhook fan-out's queue
// to every type (the service binds only what endpoints want), and one that named the
// analytics queue of a service without it would make that queue, which would fill with
// events nobody takes.
func benchBroker(childEnv []string, every bool) (*broker.Broker, error) {
	cfg, err := config.LoadFrom(childEnv)
	if err != nil {
		return nil, err
	}
	if cfg.Broker.Prefix == "" {
		return nil, fmt.Errorf("refusing to touch the unprefixed topology")
	}
	return broker.New(cfg.Broker.URL, broker.Topology{Prefix: cfg.Broker.Prefix, Consumers: workers.DeploymentConsumers(every || cfg.Analytics.Sink != "off"), RetryDelays: cfg.Workers.RetryDelays,
		Observe: true},
		slog.New(slog.NewTextHandler(io.Discard, nil))), nil
}

// waitBrokerIdle waits, at most limit, until the work queues of the service whose
// environment is childEnv hold no message: a run that follows another then finds the
// consumers (webhook fan-out, analytics) done with the earlier run's events. It returns
// what was left.
func waitBrokerIdle(ctx context.Context, childEnv []string, limit time.Duration) (int, error) {
	b, err := benchBroker(childEnv, false)
	if err != nil {
		return 0, err
	}
	defer b.Close()
	deadline := time.Now().Add(limit)
	for {
		stats, err := b.QueueStats(ctx)
		if err != nil {
			return 0, err
		}
		left := 0
		for _, q := range stats {
			if !strings.HasSuffix(q.Queue, ".dlq") {
				left += q.Messages
			}
		}
		if left == 0 || time.Now().After(deadline) {
			return left, nil
		}
		select {
		case <-ctx.Done():
			return left, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
