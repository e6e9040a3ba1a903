package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/caarlos0/env/v11"

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
	var cfg config.Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: env.ToMap(childEnv)}); err != nil {
		return err
	}
	if cfg.AMQPPrefix == "" {
		return fmt.Errorf("refusing to delete the unprefixed topology")
	}
	consumers := append(append([]broker.Consumer{}, workers.Consumers...), workers.WebhookConsumers()...)
	b := broker.New(cfg.AMQPURL, broker.Topology{Prefix: cfg.AMQPPrefix, Consumers: consumers, RetryDelays: cfg.RetryDelays},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer b.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return b.Delete(ctx)
}
