// Package broker is the RabbitMQ adapter (amqp091-go). Its topology is static and
// small: a topic exchange for domain events, one quorum queue per consumer and one
// dead-letter queue per consumer, with arguments that never depend on configuration
// (a restart with other retry settings re-declares exactly what is there). Retries and
// delays are not queues: they are scheduled in PostgreSQL (ConsumeOptions.Retry) and
// published when due. It publishes with publisher confirms, pauses publishing while
// the broker blocks the connection (a resource alarm), and runs consumers with manual
// acks, bounded prefetch and reconnection. Publishing and consuming are traced: the
// spans continue the trace an event carries in its headers (trace.go).
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/checkout-backend/checkout/internal/event"
)

// Consumer names a queue and the event types it takes.
type Consumer struct {
	Name  string
	Types []string
	// SingleActive lets one consumer at a time take the queue (RabbitMQ's single active
	// consumer), so its messages are handled in order across instances.
	SingleActive bool
	// InPlace retries a failed message in the handler's hands (with backoff) instead of
	// scheduling a retry: the next message waits, so an ordered consumer keeps its
	// order through transient failures.
	InPlace bool
	// RetryForever keeps retrying at the last delay instead of dead-lettering: for
	// handlers that end on their own (the payment worker stops once a reservation has
	// expired). Permanent errors are still dead-lettered.
	RetryForever bool
	// Remote also binds Types on the exchange of other regions' events
	// (Topology.RemoteExchange): the consumer takes every region's events of those
	// types (the partner webhooks' fan-out).
	Remote bool
	// RemoteOnly binds Types on that exchange only: the consumer takes the other
	// regions' events of those types, never this region's own (the catalog replica).
	RemoteOnly bool
	// Demand binds the queue only to the Types somebody wants now (Topology.Demand), so
	// an event nobody takes is never queued for the consumer (the partner webhooks'
	// fan-out when no endpoint wants it). Until that can be told (Demand unset, failing,
	// or held by a change under way) every type is bound: a queue bound to more than is
	// wanted costs deliveries, never an event.
	Demand bool
}

// Topology names the exchange and queues; Prefix isolates deployments and tests.
type Topology struct {
	Prefix    string
	Consumers []Consumer
	// RetryDelays are the waits before each retry; after the last the message goes to
	// the dead-letter queue (unless RetryForever). They are not queue arguments: they
	// may change between restarts.
	RetryDelays []time.Duration
	// QuorumSize is the quorum queues' replication factor (x-quorum-initial-group-size)
	// when they are created; RabbitMQ caps it at the cluster's size. 0: DefaultQuorumSize.
	// It only applies to new queues (see declareQuorum): changing it never stops a
	// restart.
	QuorumSize int
	// Idle are consumers this deployment does not run now but may have run under
	// another configuration (the analytics consumer with ANALYTICS_SINK=off). A queue of
	// theirs that no consumer takes is unbound when a connection declares the topology,
	// so it stops filling with events nobody reads; the messages already in it stay.
	Idle []Consumer
	// Demand tells the types the Demand consumers' queues are bound to: it calls route
	// with the types wanted now while nothing can start wanting another, and reports
	// false, without calling route, when it cannot tell now (a change under way took
	// longer than it waits). A type wanted from now on is bound before it is wanted
	// (Bind).
	Demand func(ctx context.Context, route func(types []string) error) (bool, error)
	// Observe makes a client that only looks at what the service declared (its queues'
	// depths) and may delete it, never declaring or binding anything itself (make bench):
	// it would bind every Demand consumer's types.
	Observe bool
}

// DefaultQuorumSize replicates each quorum queue on three nodes: one may fail (or be
// upgraded) while the other two keep a majority.
const DefaultQuorumSize = 3

// DefaultRetryDelays grow from 1s to about 4 minutes over 8 attempts.
var DefaultRetryDelays = []time.Duration{time.Second, 4 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 4 * time.Minute}

// consumer returns the named consumer of the topology (a zero Consumer with that name
// when it is not listed).
func (t Topology) consumer(name string) Consumer {
	for _, c := range t.Consumers {
		if c.Name == name {
			return c
		}
	}
	return Consumer{Name: name}
}

// Exchange is the topic exchange of domain events.
func (t Topology) Exchange() string { return t.Prefix + "checkout.events" }

// RemoteExchange is the topic exchange other regions' events arrive on (their shovels
// deliver there): only the consumers that want every region's events bind it, so what
// arrives from another region is never taken for this region's own (a payment worker
// never charges another region's order) nor sent on again.
func (t Topology) RemoteExchange() string { return t.Prefix + "checkout.remote" }

// Queue is the work queue of a consumer.
func (t Topology) Queue(consumer string) string { return t.Prefix + "checkout." + consumer }

// DeadLetterQueue is where a consumer's messages go after the last attempt.
func (t Topology) DeadLetterQueue(consumer string) string { return t.Queue(consumer) + ".dlq" }

// Queues lists every queue the topology declares (two per consumer).
func (t Topology) Queues() []string {
	var out []string
	for _, c := range t.Consumers {
		out = append(out, t.Queue(c.Name), t.DeadLetterQueue(c.Name))
	}
	return out
}

// Broker holds one AMQP connection, redialled when it drops.
type Broker struct {
	url    string
	topo   Topology
	logger *slog.Logger

	connMu sync.Mutex
	conn   *amqp.Connection
	// pubMu serializes publishers on the one confirm-mode channel pub.
	pubMu sync.Mutex
	pub   *amqp.Channel
	// node is the index in url of the node conn was dialled to.
	node int
	// blocked is set while the broker blocks the connection (connection.blocked: a
	// memory or disk alarm): publishing pauses instead of hanging.
	blocked atomic.Bool
	// OnBlocked, when set before first use, is told each change (metrics).
	OnBlocked func(blocked bool)
}

// New returns a Broker; nothing is dialled until first use (or Declare).
func New(url string, topo Topology, logger *slog.Logger) *Broker {
	if logger == nil {
		logger = slog.Default()
	}
	if topo.RetryDelays == nil {
		topo.RetryDelays = DefaultRetryDelays
	}
	if topo.QuorumSize == 0 {
		topo.QuorumSize = DefaultQuorumSize
	}
	return &Broker{url: url, topo: topo, logger: logger}
}

// Topology returns the broker's topology.
func (b *Broker) Topology() Topology { return b.topo }

// connection returns the open connection, dialling (and declaring the topology) when
// there is none.
func (b *Broker) connection() (*amqp.Connection, error) {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	if b.conn != nil && !b.conn.IsClosed() {
		return b.conn, nil
	}
	start := b.node
	if b.conn != nil {
		start++ // the node we were on dropped us: try the others first
	}
	conn, node, err := dialAny(b.url, start, amqp.Config{Heartbeat: 10 * time.Second, Dial: amqp.DefaultDial(5 * time.Second),
		Properties: amqp.Table{"connection_name": "checkout"}})
	if err != nil {
		return nil, fmt.Errorf("dial RabbitMQ: %w", err)
	}
	b.node = node
	// Every new connection declares the topology first, so a process that started
	// while the broker was away (or a broker that lost its definitions) heals itself.
	if !b.topo.Observe {
		if err := b.declareOn(conn); err != nil {
			conn.Close()
			return nil, fmt.Errorf("declare topology: %w", err)
		}
	}
	b.watchBlocked(conn)
	b.conn = conn
	return conn, nil
}

// dialAny dials the nodes of a comma-separated list of AMQP URLs (a cluster's nodes) in
// turn, from the one at index start, and returns the first connection made and the
// index of its URL. Errors name nodes by position, never by URL (which holds a password).
func dialAny(urls string, start int, cfg amqp.Config) (*amqp.Connection, int, error) {
	var list []string
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			list = append(list, u)
		}
	}
	if len(list) == 0 {
		return nil, 0, errors.New("no AMQP URL")
	}
	var errs []error
	for i := range list {
		k := (start + i) % len(list)
		conn, err := amqp.DialConfig(list[k], cfg)
		if err == nil {
			return conn, k, nil
		}
		if len(list) == 1 {
			return nil, 0, err
		}
		errs = append(errs, fmt.Errorf("node %d of %d: %w", k+1, len(list), err))
	}
	return nil, start % len(list), errors.Join(errs...)
}

// watchBlocked follows connection.blocked/unblocked of conn.
func (b *Broker) watchBlocked(conn *amqp.Connection) {
	ch := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	b.setBlocked(false)
	go func() {
		for bl := range ch {
			if bl.Active {
				b.logger.Warn("RabbitMQ blocked the connection (resource alarm): publishing paused", "reason", bl.Reason)
			} else {
				b.logger.Info("RabbitMQ unblocked the connection: publishing resumes")
			}
			b.setBlocked(bl.Active)
		}
	}()
}

func (b *Broker) setBlocked(v bool) {
	if b.blocked.Swap(v) != v && b.OnBlocked != nil {
		b.OnBlocked(v)
	}
}

// Blocked reports whether the broker blocks this process's publishing right now.
func (b *Broker) Blocked() bool { return b.blocked.Load() }

// ErrBlocked means the broker blocks publishing (a resource alarm): retry later.
var ErrBlocked = errors.New("RabbitMQ blocks publishing (resource alarm)")

// openChannel opens a channel on the broker's connection (dialled, and the topology
// declared, if need be).
func (b *Broker) openChannel() (*amqp.Channel, error) {
	conn, err := b.connection()
	if err != nil {
		return nil, err
	}
	return conn.Channel()
}

// channel opens a channel on the (re)dialled connection with a prefetch bound.
func (b *Broker) channel(prefetch int) (*amqp.Channel, error) {
	ch, err := b.openChannel()
	if err != nil {
		return nil, err
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		ch.Close()
		return nil, err
	}
	return ch, nil
}

// Ping reports whether the broker is reachable and accepts publishing, for readiness:
// an open connection answers at once; without one it dials, but answers ctx's end if
// that comes first.
func (b *Broker) Ping(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { _, err := b.connection(); done <- err }()
	select {
	case err := <-done:
		if err == nil && b.Blocked() {
			return ErrBlocked
		}
		return err
	case <-ctx.Done():
		return fmt.Errorf("broker ping: %w", ctx.Err())
	}
}

// Close closes the connection.
func (b *Broker) Close() error {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	if b.conn != nil {
		return b.conn.Close()
	}
	return nil
}

// Declare declares the whole topology (idempotent).
func (b *Broker) Declare(ctx context.Context) error {
	_, err := b.connection() // a new connection declares it
	return err
}

// queueArgs are a work queue's arguments: fixed, whatever the configuration.
func (t Topology) queueArgs(c Consumer) amqp.Table {
	args := amqp.Table{
		"x-queue-type": "quorum",
		// A message redelivered too often (a consumer crashing on it) is dead-lettered.
		"x-delivery-limit":          int32(20),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": t.DeadLetterQueue(c.Name),
	}
	if c.SingleActive {
		args["x-single-active-consumer"] = true
	}
	return args
}

func (b *Broker) declareOn(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer func() { ch.Close() }()
	t := b.topo
	if err := ch.ExchangeDeclare(t.Exchange(), "topic", true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange: %w", err)
	}
	if err := ch.ExchangeDeclare(t.RemoteExchange(), "topic", true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange: %w", err)
	}
	for _, c := range t.Consumers {
		if ch, err = declareQuorum(conn, ch, t.DeadLetterQueue(c.Name), amqp.Table{"x-queue-type": "quorum"}, t.QuorumSize); err != nil {
			return fmt.Errorf("declare %s: %w", t.DeadLetterQueue(c.Name), err)
		}
		q := t.Queue(c.Name)
		if ch, err = declareQuorum(conn, ch, q, t.queueArgs(c), t.QuorumSize); err != nil {
			return fmt.Errorf("declare %s: %w", q, err)
		}
		if c.Demand {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			told, err := b.routeDemand(ctx, conn, c)
			cancel()
			if err != nil {
				b.logger.Warn("could not tell which events are wanted; the queue takes every type until the next try", "queue", q, "error", err)
			} else if told {
				continue
			}
		}
		if err := t.bind(ch, c, c.Types, true); err != nil {
			return err
		}
	}
	if err := b.retireDelayQueues(conn); err != nil {
		b.logger.Warn("old delay queues not retired yet; the next connection tries again", "error", err)
	}
	if err := b.unbindIdle(conn); err != nil {
		b.logger.Warn("idle queues not unbound yet; the next connection tries again", "error", err)
	}
	return nil
}

// bind binds (or, with on false, unbinds) c's queue to types on the exchanges c takes
// them from.
func (t Topology) bind(ch *amqp.Channel, c Consumer, types []string, on bool) error {
	q := t.Queue(c.Name)
	var exchanges []string
	if !c.RemoteOnly {
		exchanges = append(exchanges, t.Exchange())
	}
	if c.Remote || c.RemoteOnly {
		exchanges = append(exchanges, t.RemoteExchange())
	}
	for _, typ := range types {
		for _, x := range exchanges {
			var err error
			if on {
				err = ch.QueueBind(q, typ, x, false, nil)
			} else {
				err = ch.QueueUnbind(q, typ, x, nil)
			}
			if err != nil {
				return fmt.Errorf("bind %s to %s (%v): %w", q, typ, on, err)
			}
		}
	}
	return nil
}

// routeDemand binds a Demand consumer's queue to the types wanted now and unbinds the
// others, on a channel of its own (a failure closes only that). It reports false when
// the types could not be told: the caller binds them all.
func (b *Broker) routeDemand(ctx context.Context, conn *amqp.Connection, c Consumer) (bool, error) {
	if b.topo.Demand == nil {
		return false, nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return false, err
	}
	defer ch.Close()
	return b.topo.Demand(ctx, func(wanted []string) error {
		var on, off []string
		for _, typ := range c.Types {
			if slices.Contains(wanted, typ) {
				on = append(on, typ)
			} else {
				off = append(off, typ)
			}
		}
		if err := b.topo.bind(ch, c, on, true); err != nil {
			return err
		}
		return b.topo.bind(ch, c, off, false)
	})
}

// Route binds each Demand consumer's queue to what is wanted now and unbinds the rest
// (after an endpoint is deleted, and from time to time: a connection that could not
// tell bound every type). It reports false for a consumer whose types could not be
// told now; its bindings are then left as they were.
func (b *Broker) Route(ctx context.Context) (bool, error) {
	conn, err := b.connection()
	if err != nil {
		return false, err
	}
	all := true
	for _, c := range b.topo.Consumers {
		if !c.Demand {
			continue
		}
		told, err := b.routeDemand(ctx, conn, c)
		if err != nil {
			return false, err
		}
		all = all && told
	}
	return all, ctx.Err()
}

// Bind binds consumer's queue to those of types it takes, at once: a Demand consumer's
// types are bound before anyone wants them, so no event of theirs published from then on
// misses the queue.
func (b *Broker) Bind(ctx context.Context, consumer string, types []string) error {
	c := b.topo.consumer(consumer)
	var take []string
	for _, typ := range types {
		if slices.Contains(c.Types, typ) {
			take = append(take, typ)
		}
	}
	if len(take) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ch, err := b.openChannel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return b.topo.bind(ch, c, take, true)
}

// unbindIdle unbinds the queue of each Idle consumer that exists and that no consumer
// takes: an instance that still runs it (one whose configuration has not changed yet)
// keeps it bound.
func (b *Broker) unbindIdle(conn *amqp.Connection) error {
	t := b.topo
	for _, c := range t.Idle {
		q := t.Queue(c.Name)
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil || st.Consumers > 0 {
			ch.Close() // never declared (the passive declare closed the channel), or in use
			continue
		}
		if err == nil {
			err = t.bind(ch, c, c.Types, false)
		}
		ch.Close()
		if err != nil {
			return err
		}
		if st.Messages > 0 {
			b.logger.Warn("a queue this deployment no longer consumes is unbound; the messages in it stay until it runs that consumer again or an operator deletes the queue",
				"queue", q, "messages", st.Messages)
		}
	}
	return nil
}

// legacyRetryQueues bounds the delay queues an earlier release may have declared per
// consumer (<queue>.retry.<n>; a 24 h webhook ladder needed 21).
const legacyRetryQueues = 64

// retireDelayQueues moves the messages of the delay queues earlier releases declared
// back to their work queues, then deletes those queues: a deployment that upgrades
// loses no message in flight. They were numbered from 0 without gaps, so the first
// missing one ends the search: one passive declare per consumer once they are gone.
func (b *Broker) retireDelayQueues(conn *amqp.Connection) error {
	for _, c := range b.topo.Consumers {
		for n := 0; n < legacyRetryQueues; n++ {
			name := fmt.Sprintf("%s.retry.%d", b.topo.Queue(c.Name), n)
			ch, err := conn.Channel()
			if err != nil {
				return err
			}
			if _, err := ch.QueueDeclarePassive(name, true, false, false, false, nil); err != nil {
				ch.Close() // missing (the passive declare closed the channel)
				break
			}
			err = b.drainInto(ch, name, b.topo.Queue(c.Name))
			if err == nil {
				_, err = ch.QueueDelete(name, false, false, false)
			}
			ch.Close()
			if err != nil {
				return fmt.Errorf("retire %s: %w", name, err)
			}
			b.logger.Info("retired an old delay queue into its work queue", "queue", name)
		}
	}
	return nil
}

// drainInto moves every message of queue from into queue to, confirmed, one at a time.
func (b *Broker) drainInto(ch *amqp.Channel, from, to string) error {
	if err := ch.Confirm(false); err != nil {
		return err
	}
	for {
		d, ok, err := ch.Get(from, false)
		if err != nil || !ok {
			return err
		}
		m := amqp.Publishing{MessageId: d.MessageId, Type: d.Type, ContentType: d.ContentType,
			DeliveryMode: amqp.Persistent, Timestamp: d.Timestamp, Headers: d.Headers, Body: d.Body}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = publishToQueue(ctx, ch, to, m)
		cancel()
		if err != nil {
			d.Nack(false, true)
			return err
		}
		d.Ack(false)
	}
}

// quorumGroupSize is the queue argument of a quorum queue's replication factor.
const quorumGroupSize = "x-quorum-initial-group-size"

// declareQuorum declares a durable quorum queue replicated on size nodes and returns the
// channel to go on with. The size only applies when the queue is created: RabbitMQ
// refuses a redeclare whose size differs from the queue's own (PRECONDITION_FAILED),
// which would stop a deployment whose queues predate the setting or whose setting
// changed. Such a queue is declared again without the size (its other arguments are
// still checked) and, if it has a size of its own, kept as it is: an operator resizes
// existing queues with rabbitmq-queues grow and shrink.
func declareQuorum(conn *amqp.Connection, ch *amqp.Channel, name string, args amqp.Table, size int) (*amqp.Channel, error) {
	sized := amqp.Table{quorumGroupSize: int32(size)}
	for k, v := range args {
		sized[k] = v
	}
	_, err := ch.QueueDeclare(name, true, false, false, false, sized)
	for _, retry := range []amqp.Table{args, nil} {
		var ae *amqp.Error
		if err == nil || !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed || !strings.Contains(ae.Reason, quorumGroupSize) {
			return ch, err
		}
		// The refusal closed the channel.
		if ch, err = conn.Channel(); err != nil {
			return ch, err
		}
		if retry != nil {
			_, err = ch.QueueDeclare(name, true, false, false, false, retry)
		} else {
			_, err = ch.QueueDeclarePassive(name, true, false, false, false, nil)
		}
	}
	return ch, err
}

// Delete removes the topology (tests).
func (b *Broker) Delete(ctx context.Context) error {
	ch, err := b.openChannel()
	if err != nil {
		return err
	}
	defer ch.Close()
	for _, q := range b.topo.Queues() {
		ch.QueueDelete(q, false, false, false)
	}
	ch.ExchangeDelete(b.topo.RemoteExchange(), false, false)
	return ch.ExchangeDelete(b.topo.Exchange(), false, false)
}

// message turns an envelope into a persistent AMQP message: its JSON as the body, its
// id as message-id, its type as type and routing key, and its headers (trace context,
// correlation id, attempt) as message headers.
func message(env event.Envelope) (amqp.Publishing, error) {
	body, err := json.Marshal(env)
	if err != nil {
		return amqp.Publishing{}, fmt.Errorf("encode event %s: %w", env.ID, err)
	}
	h := amqp.Table{"x-aggregate-id": env.AggregateID}
	for k, v := range env.Headers {
		h[k] = v
	}
	return amqp.Publishing{
		MessageId:    env.ID,
		Type:         env.Type,
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Timestamp:    env.OccurredAt,
		Headers:      h,
		Body:         body,
	}, nil
}

// ErrNacked means the broker refused a message.
var ErrNacked = errors.New("broker nacked a message")

// Publish sends events and returns once the broker confirmed every one, or an error;
// they go in order on one channel. An event goes to the events exchange (routing key =
// its type, and the region it is addressed to if any: event.Envelope.RoutingKey), or,
// when it has a Destination (a scheduled retry), straight to that consumer's queue. While the broker blocks publishing it fails at once with
// ErrBlocked. It implements outbox.Publisher.
func (b *Broker) Publish(ctx context.Context, events []event.Envelope) error {
	if b.Blocked() {
		return ErrBlocked
	}
	msgs := make([]amqp.Publishing, len(events))
	for i, env := range events {
		m, err := message(env)
		if err != nil {
			return err
		}
		msgs[i] = m
	}
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	conn, err := b.connection()
	if err != nil {
		return err
	}
	if b.pub == nil || b.pub.IsClosed() {
		ch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("open channel: %w", err)
		}
		if err := ch.Confirm(false); err != nil {
			ch.Close()
			return fmt.Errorf("confirm mode: %w", err)
		}
		b.pub = ch
	}
	confirms := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	for i, m := range msgs {
		exchange, key := b.topo.Exchange(), events[i].RoutingKey()
		if d := events[i].Destination; d != "" {
			exchange, key = "", b.topo.Queue(d)
		}
		dc, err := b.pub.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, m)
		if err != nil {
			b.dropPublisher()
			return fmt.Errorf("publish: %w", err)
		}
		confirms = append(confirms, dc)
	}
	for _, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			b.dropPublisher()
			return fmt.Errorf("confirm: %w", err)
		}
		if !ok {
			// A channel whose queue lost its leader (a cluster node died) may go on
			// refusing after the new leader is elected: the next batch gets a fresh one.
			b.dropPublisher()
			return ErrNacked
		}
	}
	return nil
}

// dropPublisher abandons the publishing channel after a failed publish or confirm. It is
// closed in the background: closing waits for the broker's close-ok, which a blocked or
// stalled broker never sends, and a publisher must not wait on it.
func (b *Broker) dropPublisher() {
	go b.pub.Close()
	b.pub = nil
}

// publishToQueue sends one message straight to a queue (dead letters) on a
// confirm-mode channel and waits for its confirm.
func publishToQueue(ctx context.Context, ch *amqp.Channel, queue string, m amqp.Publishing) error {
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, m)
	if err != nil {
		return err
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNacked
	}
	return nil
}

// reconnectBackOff is the wait between reconnection attempts.
func reconnectBackOff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	return bo
}

// QueueStat is one queue's figures.
type QueueStat struct {
	Queue     string
	Messages  int
	Consumers int
}

// QueueStats reads the work and dead-letter queues of every consumer with passive
// declares on a channel of its own (a missing queue closes it), for metrics.
func (b *Broker) QueueStats(ctx context.Context) ([]QueueStat, error) {
	ch, err := b.openChannel()
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	var out []QueueStat
	for _, name := range b.topo.Queues() {
		q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
		if err != nil {
			return nil, fmt.Errorf("inspect %s: %w", name, err)
		}
		out = append(out, QueueStat{Queue: name, Messages: q.Messages, Consumers: q.Consumers})
	}
	return out, nil
}

// Shovel is the dynamic shovel (RabbitMQ's shovel plugin) that moves what waits in
// queue, on this region's broker, to destExchange (Exchange or RemoteExchange of the
// same topology) on a peer region's broker at peerURI, with the routing key each
// message was published with. It acknowledges a message here only once the peer confirmed it (ack-mode
// on-confirm): a link or broker lost midway redelivers, never drops, and the consumers
// there deduplicate. peerURI names the virtual host (amqps://user:pass@host/%2f: a
// URI that ends in "/" names the empty one). An operator sets it on the local broker
// with
//
//	rabbitmqctl set_parameter shovel <name> '<definition>'
//
// (`checkout shovels` prints these commands). name is unique per queue.
func (t Topology) Shovel(queue, destExchange, peerURI string) (name string, definition []byte) {
	def, _ := json.Marshal(map[string]any{
		"src-protocol":     "amqp091",
		"src-uri":          "amqp://",
		"src-queue":        queue,
		"dest-protocol":    "amqp091",
		"dest-uri":         peerURI,
		"dest-exchange":    destExchange,
		"ack-mode":         "on-confirm",
		"src-delete-after": "never",
		"reconnect-delay":  1,
	})
	return "shovel." + queue, def
}
