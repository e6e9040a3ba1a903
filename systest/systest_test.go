// Package systest holds the system tests: each runs the whole service (API, outbox
// relay, saga workers, sweeper; sometimes the built binary) against real dependencies
// and checks what users rely on at its edges. It has no code besides its tests.
//
//   - End to end (e2e_test.go): one trace across HTTP, SQL, the outbox, RabbitMQ, the
//     worker and the payment call; load shedding under a burst far over capacity.
//   - Faults (faults_test.go, stall_test.go): toxiproxy (the go tool pinned in go.mod)
//     between the service and PostgreSQL, RabbitMQ or the payment provider, cut, slowed,
//     stalled or reset while the service works.
//   - Failover (failover_*_test.go, replica_test.go): the service on replicated
//     dependencies it does not own (private nodes of internal/node), one taken away
//     mid-sale: a Patroni leader's Patroni and postmaster killed and its synchronous
//     standby promoted by Patroni, a RabbitMQ cluster node killed; and the binary
//     reading its catalog from a replica. No acknowledged order lost, nothing oversold,
//     every order paid once.
//   - Pooling (pgbouncer_test.go): ten binaries through one PgBouncer in transaction
//     mode to a server of 100 connections, a flash sale with nobody refused.
//
// Tests here never stop the machine's shared servers: they cut proxies of their own or
// kill private nodes by their process ids.
package systest

import "github.com/checkout-backend/checkout/internal/checkout"

// checkoutMutation places an order through the GraphQL API.
const checkoutMutation = `mutation($in: CheckoutInput!) { checkout(input: $in) { order { id } userErrors { code } } }`

func line(sku string, q int) checkout.Line { return checkout.Line{SKU: sku, Quantity: q} }
