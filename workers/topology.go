package workers

import (
	"slices"

	"github.com/checkout-backend/checkout/internal/analytics"
	"github.com/checkout-backend/checkout/internal/broker"
)

// DeploymentConsumers is every consumer one deployment declares: the saga's, the partner
// webhooks' and, unless the analytics sink is off, the analytics consumer. The service,
// the bench and the tests that clean up a deployment's queues all take it from here.
func DeploymentConsumers(withAnalytics bool) []broker.Consumer {
	consumers := append(append([]broker.Consumer{}, Consumers...), WebhookConsumers()...)
	if withAnalytics {
		consumers = append(consumers, analytics.Consumer)
	}
	return consumers
}

// IdleConsumers are the consumers of DeploymentConsumers a deployment does not run with
// this configuration (the analytics consumer when its sink is off): their queues, left by
// an earlier configuration, are unbound rather than left to fill (broker.Topology.Idle).
func IdleConsumers(withAnalytics bool) []broker.Consumer {
	running := DeploymentConsumers(withAnalytics)
	var idle []broker.Consumer
	for _, c := range DeploymentConsumers(true) {
		if !slices.ContainsFunc(running, func(r broker.Consumer) bool { return r.Name == c.Name }) {
			idle = append(idle, c)
		}
	}
	return idle
}
