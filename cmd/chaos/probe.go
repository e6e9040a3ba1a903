package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// writeProbe writes to every PostgreSQL node at once, every interval, through a
// connection of its own to each (never through the pooler or HAProxy, which show one
// node only), and counts the rounds in which more than one node accepted the write: the
// moments with two primaries, which must never happen. A write waits at most timeout
// (a primary that lost its synchronous standby waits for ever in strict mode).
type writeProbe struct {
	urls     []string
	interval time.Duration
	timeout  time.Duration

	mu       sync.Mutex
	rounds   int
	twoNodes int      // rounds with more than one node writable
	first    []string // the first such round, for the report
	stop     context.CancelFunc
	done     chan struct{}
}

// startWriteProbe creates the probe's table on whichever node is the primary now (the
// standbys get it by replication) and starts probing.
func startWriteProbe(ctx context.Context, urls []string) (*writeProbe, error) {
	p := &writeProbe{urls: urls, interval: 100 * time.Millisecond, timeout: 300 * time.Millisecond,
		done: make(chan struct{})}
	created := false
	for _, u := range urls {
		c, err := pgx.Connect(ctx, u)
		if err != nil {
			continue
		}
		_, err = c.Exec(ctx, "CREATE TABLE IF NOT EXISTS chaos_write_probe (node int, at timestamptz)")
		c.Close(context.Background())
		if err == nil {
			created = true
			break
		}
	}
	if !created {
		return nil, fmt.Errorf("write probe: no node accepted CREATE TABLE")
	}
	ctx, p.stop = context.WithCancel(ctx)
	go p.run(ctx)
	return p, nil
}

func (p *writeProbe) run(ctx context.Context) {
	defer close(p.done)
	conns := make([]*pgx.Conn, len(p.urls))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.Background())
			}
		}
	}()
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		accepted := make([]bool, len(p.urls))
		var wg sync.WaitGroup
		for i := range p.urls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				accepted[i] = p.write(ctx, conns, i)
			}()
		}
		wg.Wait()
		var writable []string
		for i, ok := range accepted {
			if ok {
				writable = append(writable, fmt.Sprintf("node %d", i+1))
			}
		}
		p.mu.Lock()
		p.rounds++
		if len(writable) > 1 {
			p.twoNodes++
			if p.first == nil {
				p.first = append([]string{time.Now().Format("15:04:05.000")}, writable...)
			}
		}
		p.mu.Unlock()
	}
}

// write inserts one row on node i, connecting when needed; it reports whether the
// node accepted (and committed) it within the timeout.
func (p *writeProbe) write(ctx context.Context, conns []*pgx.Conn, i int) bool {
	wctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if conns[i] == nil || conns[i].IsClosed() {
		c, err := pgx.Connect(wctx, p.urls[i])
		if err != nil {
			return false
		}
		conns[i] = c
	}
	if _, err := conns[i].Exec(wctx, "INSERT INTO chaos_write_probe VALUES ($1, now())", i+1); err != nil {
		// A timed-out or failed statement may leave the connection unusable: start again.
		conns[i].Close(context.Background())
		conns[i] = nil
		return false
	}
	return true
}

// result stops the probe and says what it saw.
func (p *writeProbe) result() (rounds, twoNodes int, first []string) {
	p.stop()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rounds, p.twoNodes, p.first
}
