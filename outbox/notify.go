package outbox

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"
)

// Notifier wakes relays after a commit that wrote events. Call Notify once the writing
// transaction committed (never inside it: a NOTIFY in a transaction takes a
// database-wide lock held through its commit). Relays of this process wake at once.
// A process with no relay of its own (serve --no-relay) wakes the relays of other
// processes with one NOTIFY "outbox.<schema>" per Coalesce, however many commits asked;
// a process with its own relay sends none (that relay publishes what this process
// wrote, and a round trip per commit is saved). Relays also poll, so a lost wake-up
// only delays.
type Notifier struct {
	db *bun.DB
	// Coalesce is how long a NOTIFY waits for company (default 2ms).
	Coalesce time.Duration

	mu      sync.Mutex
	local   []chan struct{}
	pending atomic.Bool
	channel atomic.Value // string, resolved on first use
}

// NewNotifier returns a notifier sending its NOTIFY over db.
func NewNotifier(db *bun.DB) *Notifier { return &Notifier{db: db, Coalesce: 2 * time.Millisecond} }

// Notify wakes the relays; it never blocks.
func (n *Notifier) Notify() {
	if n == nil {
		return
	}
	n.mu.Lock()
	for _, ch := range n.local {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	local := len(n.local) > 0
	n.mu.Unlock()
	if local || !n.pending.CompareAndSwap(false, true) {
		return
	}
	go func() {
		time.Sleep(n.Coalesce)
		n.pending.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ch, _ := n.channel.Load().(string)
		if ch == "" {
			var schema string
			if err := n.db.NewRaw("SELECT current_schema()").Scan(ctx, &schema); err != nil {
				return
			}
			ch = Channel(schema)
			n.channel.Store(ch)
		}
		n.db.ExecContext(ctx, "SELECT pg_notify(?, '')", ch)
	}()
}

// subscribe registers a relay's wake channel.
func (n *Notifier) subscribe(ch chan struct{}) {
	n.mu.Lock()
	n.local = append(n.local, ch)
	n.mu.Unlock()
}
