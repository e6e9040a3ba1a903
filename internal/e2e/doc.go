// Package e2e holds tests of the whole service at its edges: one trace across HTTP,
// SQL, the outbox, RabbitMQ, the worker and the payment call; and load shedding under a
// burst far over capacity.
package e2e
