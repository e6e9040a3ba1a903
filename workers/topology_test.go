package workers_test

import (
	"slices"
	"testing"

	"github.com/checkout-backend/checkout/internal/analytics"
	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/workers"
)

// A deployment without the analytics sink names the analytics consumer idle, so its
// queue, left by a configuration that had the sink, is unbound instead of filling.
func TestIdleConsumers_WhatADeploymentMayHaveRunAndDoesNot(t *testing.T) {
	names := func(cs []broker.Consumer) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		slices.Sort(out)
		return out
	}
	if idle := workers.IdleConsumers(true); len(idle) != 0 {
		t.Fatalf("with the sink on, idle consumers %v, want none", names(idle))
	}
	if idle := names(workers.IdleConsumers(false)); !slices.Equal(idle, []string{analytics.Consumer.Name}) {
		t.Fatalf("with the sink off, idle consumers %v, want [%s]", idle, analytics.Consumer.Name)
	}
	all := names(workers.DeploymentConsumers(true))
	without := names(append(workers.DeploymentConsumers(false), workers.IdleConsumers(false)...))
	if !slices.Equal(all, without) {
		t.Fatalf("without the sink, running %v and idle %v, want together %v", names(workers.DeploymentConsumers(false)), names(workers.IdleConsumers(false)), all)
	}
}
