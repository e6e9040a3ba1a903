// Package failover holds the tests that run the service on replicated dependencies it
// does not own and take one of them away mid-sale: a PostgreSQL primary killed and its
// synchronous standby promoted, a RabbitMQ cluster node killed. Each test starts its
// private nodes (internal/testutil/pgnode, rabbitnode) and checks what users rely on: no
// acknowledged order lost, nothing oversold, every order paid once.
package failover
