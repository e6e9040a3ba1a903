package workers_test

import (
	"io"
	"log/slog"

	"github.com/checkout-backend/checkout/internal/store"
)

func storePayment(orderID, providerID string) store.Payment {
	return store.Payment{OrderID: orderID, Provider: "sandbox", ProviderPaymentID: &providerID}
}

func testLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }
