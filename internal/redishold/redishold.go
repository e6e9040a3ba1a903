// Package redishold is the Redis side of the redis reservation strategy: a counter of
// what each SKU has left, and an atomic hold (a Lua script) that takes every line of a
// checkout or none, recorded under the order with a TTL. PostgreSQL stays the last
// word: the order and its reservation are still committed there with its constraints,
// a hold whose order PostgreSQL refused is given back, and the counters are rebuilt from
// PostgreSQL at start and by the sweeper, so a Redis that lost its data or drifted never
// oversells (it only admits a checkout PostgreSQL then refuses).
package redishold

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// Store holds stock in Redis under keys prefixed by Prefix.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
}

// New returns a Store on rdb; prefix isolates deployments (and tests).
func New(rdb redis.UniversalClient, prefix string) *Store { return &Store{rdb: rdb, prefix: prefix} }

func (s *Store) stockKey(sku string) string    { return s.prefix + "stock:" + sku }
func (s *Store) holdKey(orderID string) string { return s.prefix + "hold:" + orderID }

// ErrUnknownSKU means a line's counter is missing (never synced, or Redis lost it).
var ErrUnknownSKU = errors.New("redishold: stock counter missing")

// hold takes every line or none. KEYS: the hold key, then one stock key per line.
// ARGV: ttl in ms, then one quantity per line. It returns -1 when held, the 0-based
// index of the first short line otherwise, or -2 when a counter is missing; with the
// units that line had left.
var hold = redis.NewScript(`
for i = 2, #KEYS do
  local have = redis.call('GET', KEYS[i])
  if not have then return {-2, i - 2} end
  if tonumber(have) < tonumber(ARGV[i]) then return {i - 2, tonumber(have)} end
end
local rec = {}
for i = 2, #KEYS do
  redis.call('DECRBY', KEYS[i], ARGV[i])
  rec[#rec + 1] = KEYS[i] .. '=' .. ARGV[i]
end
redis.call('SET', KEYS[1], table.concat(rec, ','), 'PX', ARGV[1])
return {-1, 0}
`)

// release gives a hold's units back, once. KEYS: the hold key.
var release = redis.NewScript(`
local rec = redis.call('GET', KEYS[1])
if not rec then return 0 end
for part in string.gmatch(rec, '[^,]+') do
  local k, q = string.match(part, '^(.*)=(%d+)$')
  if redis.call('EXISTS', k) == 1 then redis.call('INCRBY', k, q) end
end
redis.call('DEL', KEYS[1])
return 1
`)

// Hold takes each line's quantity for orderID, all or none, kept ttl. It returns -1
// when held, else the index of the first short line and what it had left.
func (s *Store) Hold(ctx context.Context, orderID string, lines []checkout.Line, ttl time.Duration) (short, left int, err error) {
	keys := []string{s.holdKey(orderID)}
	args := []any{max(ttl.Milliseconds(), 1)}
	for _, l := range lines {
		keys = append(keys, s.stockKey(l.SKU))
		args = append(args, l.Quantity)
	}
	r, err := hold.Run(ctx, s.rdb, keys, args...).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("redis hold: %w", err)
	}
	switch r[0] {
	case -1:
		return -1, 0, nil
	case -2:
		return int(r[1]), 0, fmt.Errorf("%w: %s", ErrUnknownSKU, lines[r[1]].SKU)
	}
	return int(r[0]), int(r[1]), nil
}

// Release gives orderID's hold back (a checkout PostgreSQL refused, or a replay).
func (s *Store) Release(ctx context.Context, orderID string) error {
	if err := release.Run(ctx, s.rdb, []string{s.holdKey(orderID)}).Err(); err != nil {
		return fmt.Errorf("redis release: %w", err)
	}
	return nil
}

// Return puts units back after PostgreSQL released or restocked them (an order expired,
// failed or was cancelled); a missing counter is left to the next Sync.
func (s *Store) Return(ctx context.Context, items []checkout.OrderItem) error {
	pipe := s.rdb.TxPipeline()
	for _, it := range items {
		k := s.stockKey(it.SKU)
		pipe.Eval(ctx, `if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end return 0`, []string{k}, it.Quantity)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis return: %w", err)
	}
	return nil
}

// Sync sets the counters to what PostgreSQL says is available.
func (s *Store) Sync(ctx context.Context, available map[string]int) error {
	if len(available) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	for sku, n := range available {
		pipe.Set(ctx, s.stockKey(sku), strconv.Itoa(max(n, 0)), 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis sync: %w", err)
	}
	return nil
}

// Counter reads a SKU's counter (tests, diagnostics); -1 when missing.
func (s *Store) Counter(ctx context.Context, sku string) (int, error) {
	v, err := s.rdb.Get(ctx, s.stockKey(sku)).Result()
	if errors.Is(err, redis.Nil) {
		return -1, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(v))
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }
