package broker

import (
	"sort"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// acker settles the deliveries of one channel for a consumer whose deliveries finish
// together (ConsumeOptions.CoalesceAcks): a finished delivery is acknowledged once no
// delivery before it is still in hand, with one basic.ack (multiple) for the whole run
// of finished ones. RabbitMQ then settles the run in one command of the queue's log, and
// the socket carries one frame, where each delivery took one of each. A delivery that is
// rejected or requeued is settled on its own at once, so it never rides on an ack.
//
// The price is that a delivery in hand holds back the acks of those after it: right for
// a consumer that finishes a batch at once (analytics acks when its batch is written),
// wrong for one whose deliveries take unequal times, which keeps per-delivery acks.
type acker struct {
	mu sync.Mutex
	ch interface {
		Ack(tag uint64, multiple bool) error
		Nack(tag uint64, multiple, requeue bool) error
	}
	q []ackEntry // delivered and not yet settled on the wire, in delivery-tag order
}

type ackEntry struct {
	tag   uint64
	state uint8
}

const (
	inHand  uint8 = iota
	done          // finished, to be acknowledged
	settled       // rejected or requeued on its own
)

func newAcker(ch *amqp.Channel) *acker { return &acker{ch: ch} }

// delivered records a delivery as it arrives (deliveries arrive in tag order).
func (a *acker) delivered(tag uint64) {
	a.mu.Lock()
	a.q = append(a.q, ackEntry{tag: tag})
	a.mu.Unlock()
}

// ack marks tag finished and acknowledges the run of finished deliveries at the front.
func (a *acker) ack(tag uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mark(tag, done)
	return a.flush()
}

// nack rejects tag (requeue: back to the queue) at once, then acknowledges the run of
// finished deliveries it may have been holding back.
func (a *acker) nack(tag uint64, requeue bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mark(tag, settled)
	err := a.ch.Nack(tag, false, requeue)
	if ferr := a.flush(); err == nil {
		err = ferr
	}
	return err
}

func (a *acker) mark(tag uint64, state uint8) {
	i := sort.Search(len(a.q), func(i int) bool { return a.q[i].tag >= tag })
	if i < len(a.q) && a.q[i].tag == tag {
		a.q[i].state = state
	}
}

// flush acknowledges the finished deliveries at the front with one multiple ack up to
// the last of them that is not settled already (RabbitMQ refuses an ack of a tag it no
// longer holds; the settled ones before it are no longer held, so the ack leaves them).
func (a *acker) flush() error {
	var last uint64
	n := 0
	for n < len(a.q) && a.q[n].state != inHand {
		if a.q[n].state == done {
			last = a.q[n].tag
		}
		n++
	}
	if n == 0 {
		return nil
	}
	a.q = append(a.q[:0], a.q[n:]...)
	if last == 0 {
		return nil
	}
	return a.ch.Ack(last, true)
}
