package workers_test

import (
	"testing"

	"github.com/checkout-backend/checkout/internal/payment/sandbox"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/workers"
)

// The clock is a dependency: no worker is made without one. NewPaymentWorker, which
// returns an error for its other missing dependencies, returns one; the others panic (a
// programming error).
func TestConstructors_RefuseANilClock(t *testing.T) {
	t.Parallel()
	if _, err := workers.NewPaymentWorker((*store.Payments)(nil), sandbox.New(), nil, nil); err == nil {
		t.Error("NewPaymentWorker took a nil clock")
	}
	for name, newWorker := range map[string]func(){
		"NewWebhooks": func() { workers.NewWebhooks((*store.Webhooks)(nil), nil, workers.WebhookOptions{}) },
		"NewSweeper":  func() { workers.NewSweeper((*store.Orders)(nil), nil, nil, workers.SweeperOptions{}) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if r := recover(); r != "workers: "+name+" with a nil clock" {
					t.Fatalf("%s with a nil clock: recovered %v, want its panic", name, r)
				}
			}()
			newWorker()
		})
	}
}
