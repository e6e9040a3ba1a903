package main

import (
	"context"
	"fmt"
	"math/rand/v2"
)

// productSpec is one product a workload sells, with its initial stock per warehouse.
type productSpec struct {
	SKU        string
	PriceCents int
	Stock      map[string]int // warehouse id → on hand
}

// InitialStock is the product's stock summed over warehouses.
func (p productSpec) InitialStock() int {
	n := 0
	for _, v := range p.Stock {
		n += v
	}
	return n
}

// lineItem is a LineItemInput of the checkout mutation.
type lineItem struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// workload is a kind of traffic: the catalog it sets up and the basket of each checkout.
type workload struct {
	name  string // the -workload name
	short string // a short tag for its SKUs
	about string // one line for the report
	// catalog returns the products (with stock) to create, their SKUs starting with prefix.
	catalog func(prefix string) []productSpec
	// items picks the lines of one checkout from the catalog. r is the caller's own.
	items func(r *rand.Rand, catalog []productSpec) []lineItem
	// run, when set, replaces the checkout attack and the probes: the workload measures
	// something else (fanout) once its catalog exists, and makes its own report.
	run func(ctx context.Context, env *runEnv) (*Report, error)
}

// workloads is the registry, in the default running order.
var workloads = []*workload{flashSale, spread, fanout}

func workloadNames() []string {
	names := make([]string, len(workloads))
	for i, w := range workloads {
		names[i] = w.name
	}
	return names
}

func lookupWorkload(name string) *workload {
	for _, w := range workloads {
		if w.name == name {
			return w
		}
	}
	return nil
}

const (
	flashSaleStock = 500
	spreadSKUs     = 200
	spreadStockPer = 500 // per warehouse; 2 warehouses make 1000 per SKU
)

// flashSale: everyone wants one unit of the same SKU; the stock runs out fast and every
// checkout after that must answer OUT_OF_STOCK, never an oversold order.
var flashSale = &workload{
	name:  "flash-sale",
	short: "FS",
	about: fmt.Sprintf("one hot SKU, stock %d in 1 warehouse; 1 unit per checkout", flashSaleStock),
	catalog: func(prefix string) []productSpec {
		return []productSpec{{SKU: prefix + "-HOT", PriceCents: 15000, Stock: map[string]int{"bench-ams": flashSaleStock}}}
	},
	items: func(_ *rand.Rand, c []productSpec) []lineItem {
		return []lineItem{{SKU: c[0].SKU, Quantity: 1}}
	},
}

// spread: a wide catalog over two warehouses; baskets of 1-3 distinct SKUs, 1-2 units
// each, so that transactions lock several rows (in varying order) but rarely collide.
var spread = &workload{
	name:  "spread",
	short: "SP",
	about: fmt.Sprintf("%d SKUs, stock %d each over 2 warehouses; 1-3 random SKUs x 1-2 units per checkout", spreadSKUs, 2*spreadStockPer),
	catalog: func(prefix string) []productSpec {
		ps := make([]productSpec, spreadSKUs)
		for i := range ps {
			ps[i] = productSpec{
				SKU:        fmt.Sprintf("%s-%03d", prefix, i),
				PriceCents: 500 + 25*i,
				Stock:      map[string]int{"bench-ams": spreadStockPer, "bench-nyc": spreadStockPer},
			}
		}
		return ps
	},
	items: func(r *rand.Rand, c []productSpec) []lineItem {
		n := 1 + r.IntN(3)
		lines := make([]lineItem, 0, n)
	pick:
		for len(lines) < n {
			sku := c[r.IntN(len(c))].SKU
			for _, l := range lines {
				if l.SKU == sku {
					continue pick
				}
			}
			lines = append(lines, lineItem{SKU: sku, Quantity: 1 + r.IntN(2)})
		}
		return lines
	},
}
