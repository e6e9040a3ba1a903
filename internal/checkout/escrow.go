package checkout

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/checkout-backend/checkout/internal/event"
)

// TransferStore is where a region keeps its side of escrow (store.Transfers): the
// requests it makes for stock, the grants it gives and the grants it credits.
type TransferStore interface {
	// Ask makes one rebalancing round's requests, addressed to peers in turn.
	Ask(ctx context.Context, peers []string, opt AskOptions) ([]event.TransferPayload, error)
	// Grant answers a request to this region, keeping keep units here.
	Grant(ctx context.Context, req event.TransferPayload, keep int) (event.TransferPayload, error)
	// Credit takes in a grant to this region once; false for a duplicate.
	Credit(ctx context.Context, grant event.TransferPayload) (bool, error)
}

// AskOptions tune a rebalancing round (TransferStore.Ask).
type AskOptions struct {
	// Low: a SKU with fewer units available here is asked for. Target: how many it asks
	// to have (Target - available).
	Low, Target int
	// Reask: no SKU is asked for again sooner after its last request (answered or
	// not: a request lost in a partition is asked again, of the next region, after it).
	Reask time.Duration
	// Idle: after a grant of nothing, the SKU is not asked for again sooner (no region
	// had any to spare; it is asked again when one may have been restocked).
	Idle time.Duration
	// Warehouse receives the units of a SKU this region has no warehouse of (a SKU kept
	// in another region only, until now).
	Warehouse string
}

// TransferRecord is one side of a transfer of stock between regions: what the giver
// recorded (Region is the receiver) or what the receiver credited (Region is the giver).
type TransferRecord struct {
	SKU      string
	Region   string
	Quantity int
}

// RegionLedger is what one region's database says of its share of the stock: each
// SKU's units on hand (over its warehouses, reserved ones included), and the transfers
// it gave and credited, by transfer id.
type RegionLedger struct {
	Region   string
	OnHand   map[string]int
	Given    map[string]TransferRecord
	Credited map[string]TransferRecord
}

// CheckEscrow checks the escrow invariant over every region's ledger, for each SKU of
// expected (the units the regions hold and have in transit between them, taken
// together: what they were given to sell, less what they sold):
//
//   - every credit matches a grant of the same transfer id, SKU, quantity and pair of
//     regions (nothing is credited that was not debited, nor twice);
//   - the units in transit (granted, not yet credited) are never negative;
//   - the units on hand over all regions plus those in transit equal expected.
//
// It returns one line per violation, none when the invariant holds.
func CheckEscrow(ledgers []RegionLedger, expected map[string]int) []string {
	var bad []string
	inTransit := InTransit(ledgers)
	for _, receiver := range ledgers {
		for id, c := range receiver.Credited {
			var grant *TransferRecord
			var from string
			for _, giver := range ledgers {
				if g, ok := giver.Given[id]; ok {
					grant, from = &g, giver.Region
					break
				}
			}
			switch {
			case grant == nil:
				bad = append(bad, fmt.Sprintf("transfer %s: %d of %s credited in %s, never granted", id, c.Quantity, c.SKU, receiver.Region))
			case grant.SKU != c.SKU || grant.Quantity != c.Quantity || grant.Region != receiver.Region || c.Region != from:
				bad = append(bad, fmt.Sprintf("transfer %s: granted %d of %s by %s to %s, credited %d of %s by %s from %s",
					id, grant.Quantity, grant.SKU, from, grant.Region, c.Quantity, c.SKU, receiver.Region, c.Region))
			}
		}
	}
	skus := make([]string, 0, len(expected))
	for sku := range expected {
		skus = append(skus, sku)
	}
	sort.Strings(skus)
	for _, sku := range skus {
		onHand := 0
		for _, l := range ledgers {
			onHand += l.OnHand[sku]
		}
		if inTransit[sku] < 0 {
			bad = append(bad, fmt.Sprintf("%s: %d in transit", sku, inTransit[sku]))
		}
		if onHand+inTransit[sku] != expected[sku] {
			bad = append(bad, fmt.Sprintf("%s: %d on hand in all regions + %d in transit = %d, want %d",
				sku, onHand, inTransit[sku], onHand+inTransit[sku], expected[sku]))
		}
	}
	return bad
}

// InTransit is, per SKU, the units granted and not yet credited, over the ledgers.
func InTransit(ledgers []RegionLedger) map[string]int {
	out := map[string]int{}
	for _, l := range ledgers {
		for _, g := range l.Given {
			out[g.SKU] += g.Quantity
		}
		for _, c := range l.Credited {
			out[c.SKU] -= c.Quantity
		}
	}
	return out
}
