// Package faults holds the fault-injection tests: toxiproxy (the go tool pinned in
// go.mod) between the service and PostgreSQL, RabbitMQ or the payment provider, cut,
// slowed or reset while the service works, and what users rely on checked afterwards.
package faults
