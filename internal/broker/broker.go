// Package broker is the RabbitMQ adapter (amqp091-go): it declares the topology (a topic
// exchange for domain events, a quorum queue per consumer, delay queues that dead-letter
// back for retries, and a dead-letter queue), publishes with publisher confirms, and
// runs consumers with manual acks, bounded prefetch and reconnection.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
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
	// RetryDelays override the topology's retry delays for this consumer.
	RetryDelays []time.Duration
	// Jitter draws each retry's wait at random between half and all of its delay.
	Jitter bool
	// RetryForever keeps retrying at the last delay instead of dead-lettering: for
	// handlers that end on their own (the payment worker stops once a reservation has
	// expired). Permanent errors are still dead-lettered.
	RetryForever bool
}

func (t Topology) delays(consumer string) []time.Duration {
	for _, c := range t.Consumers {
		if c.Name == consumer && c.RetryDelays != nil {
			return c.RetryDelays
		}
	}
	return t.RetryDelays
}

func (t Topology) consumer(name string) Consumer {
	for _, c := range t.Consumers {
		if c.Name == name {
			return c
		}
	}
	return Consumer{Name: name}
}

func (t Topology) jitter(consumer string) bool {
	for _, c := range t.Consumers {
		if c.Name == consumer {
			return c.Jitter
		}
	}
	return false
}

// Topology names the exchange and queues; Prefix isolates tests.
type Topology struct {
	Prefix    string
	Consumers []Consumer
	// RetryDelays are the waits before each retry; after the last the message goes to
	// the dead-letter queue.
	RetryDelays []time.Duration
	// QuorumSize is the quorum queues' replication factor (x-quorum-initial-group-size)
	// when they are created; RabbitMQ caps it at the cluster's size. 0: DefaultQuorumSize.
	QuorumSize int
}

// DefaultQuorumSize replicates each quorum queue on three nodes: one may fail (or be
// upgraded) while the other two keep a majority.
const DefaultQuorumSize = 3

// DefaultRetryDelays grow from 1s to about 4 minutes over 8 attempts.
var DefaultRetryDelays = []time.Duration{time.Second, 4 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 4 * time.Minute}

// Exchange is the topic exchange of domain events.
func (t Topology) Exchange() string { return t.Prefix + "checkout.events" }

// Queue is the work queue of a consumer.
func (t Topology) Queue(consumer string) string { return t.Prefix + "checkout." + consumer }

// RetryQueue is the delay queue of a consumer's n-th retry (0-based).
func (t Topology) RetryQueue(consumer string, n int) string {
	return fmt.Sprintf("%s.retry.%d", t.Queue(consumer), n)
}

// DeadLetterQueue is where a consumer's messages go after the last attempt.
func (t Topology) DeadLetterQueue(consumer string) string { return t.Queue(consumer) + ".dlq" }

// Broker holds one AMQP connection, redialled when it drops.
type Broker struct {
	url    string
	topo   Topology
	logger *slog.Logger

	mu   sync.Mutex
	conn *amqp.Connection
	pub  *amqp.Channel
	node int // index in url of the node conn was dialled to
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

func (b *Broker) connection() (*amqp.Connection, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.connLocked()
}

func (b *Broker) connLocked() (*amqp.Connection, error) {
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
	if err := b.declareOn(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("declare topology: %w", err)
	}
	b.conn, b.pub = conn, nil
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

// channel opens a channel on the (re)dialled connection with a prefetch bound.
func (b *Broker) channel(prefetch int) (*amqp.Channel, error) {
	conn, err := b.connection()
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		ch.Close()
		return nil, err
	}
	return ch, nil
}

// Ping reports whether the broker is reachable, for readiness.
func (b *Broker) Ping(context.Context) error {
	_, err := b.connection()
	return err
}

// Close closes the connection.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
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
	quorum := func(extra amqp.Table) amqp.Table {
		args := amqp.Table{"x-queue-type": "quorum"}
		for k, v := range extra {
			args[k] = v
		}
		return args
	}
	declare := func(name string, args amqp.Table) error {
		ch, err = declareQuorum(conn, ch, name, args, t.QuorumSize)
		return err
	}
	for _, c := range t.Consumers {
		q := t.Queue(c.Name)
		if err := declare(t.DeadLetterQueue(c.Name), quorum(nil)); err != nil {
			return fmt.Errorf("declare %s: %w", t.DeadLetterQueue(c.Name), err)
		}
		// A message redelivered too often (a consumer crashing on it) is dead-lettered.
		args := amqp.Table{
			"x-delivery-limit":          int32(20),
			"x-dead-letter-exchange":    "",
			"x-dead-letter-routing-key": t.DeadLetterQueue(c.Name),
		}
		if c.SingleActive {
			args["x-single-active-consumer"] = true
		}
		if err := declare(q, quorum(args)); err != nil {
			return fmt.Errorf("declare %s: %w", q, err)
		}
		for _, typ := range c.Types {
			if err := ch.QueueBind(q, typ, t.Exchange(), false, nil); err != nil {
				return fmt.Errorf("bind %s: %w", q, err)
			}
		}
		// Delay queues: a message waits its TTL, then dead-letters back to the work queue.
		for i, d := range t.delays(c.Name) {
			if err := declare(t.RetryQueue(c.Name, i), quorum(amqp.Table{
				"x-message-ttl":             int64(d / time.Millisecond),
				"x-dead-letter-exchange":    "",
				"x-dead-letter-routing-key": q,
			})); err != nil {
				return fmt.Errorf("declare retry queue: %w", err)
			}
		}
	}
	return nil
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
	conn, err := b.connection()
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	t := b.topo
	for _, c := range t.Consumers {
		for i := range t.delays(c.Name) {
			ch.QueueDelete(t.RetryQueue(c.Name, i), false, false, false)
		}
		ch.QueueDelete(t.Queue(c.Name), false, false, false)
		ch.QueueDelete(t.DeadLetterQueue(c.Name), false, false, false)
	}
	return ch.ExchangeDelete(t.Exchange(), false, false)
}

// Message turns an envelope into a persistent AMQP message.
func Message(env event.Envelope, body []byte) amqp.Publishing {
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
	}
}

// ErrNacked means the broker refused a message.
var ErrNacked = errors.New("broker nacked a message")

// Publish sends messages to the events exchange (routing key = type) and returns once
// the broker confirmed every one, or an error; messages are in order on one channel.
func (b *Broker) Publish(ctx context.Context, msgs []amqp.Publishing) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	conn, err := b.connLocked()
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
	for _, m := range msgs {
		dc, err := b.pub.PublishWithDeferredConfirmWithContext(ctx, b.topo.Exchange(), m.Type, false, false, m)
		if err != nil {
			b.pub.Close()
			b.pub = nil
			return fmt.Errorf("publish: %w", err)
		}
		confirms = append(confirms, dc)
	}
	for _, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			b.pub.Close()
			b.pub = nil
			return fmt.Errorf("confirm: %w", err)
		}
		if !ok {
			// A channel whose queue lost its leader (a cluster node died) may go on
			// refusing after the new leader is elected: the next batch gets a fresh one.
			b.pub.Close()
			b.pub = nil
			return ErrNacked
		}
	}
	return nil
}

// PublishTo sends one message straight to a queue (retries and dead letters), confirmed.
func (b *Broker) publishToQueue(ctx context.Context, ch *amqp.Channel, queue string, m amqp.Publishing) error {
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
	conn, err := b.connection()
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	var out []QueueStat
	for _, c := range b.topo.Consumers {
		for _, name := range []string{b.topo.Queue(c.Name), b.topo.DeadLetterQueue(c.Name)} {
			q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
			if err != nil {
				return nil, fmt.Errorf("inspect %s: %w", name, err)
			}
			out = append(out, QueueStat{Queue: name, Messages: q.Messages, Consumers: q.Consumers})
		}
	}
	return out, nil
}
