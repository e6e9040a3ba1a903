package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/checkout-backend/checkout/internal/node"
)

// stockPlan is each SKU's units per region at the start (a region missing has none).
type stockPlan map[string]map[string]int

// demoStock is make regions' catalog: a SKU in both regions, a scarce one, one kept in
// east only (west sells it once the rebalancer has moved some).
var demoStock = stockPlan{
	"TSHIRT":  {"east": 200, "west": 200},
	"SNEAKER": {"east": 20, "west": 20},
	"VINYL":   {"east": 50},
}

func describeStock(p stockPlan) string {
	var parts []string
	for _, sku := range sortedKeys(p) {
		var per []string
		for _, r := range sortedKeys(p[sku]) {
			per = append(per, fmt.Sprintf("%s %d", r, p[sku][r]))
		}
		parts = append(parts, sku+" ("+strings.Join(per, ", ")+")")
	}
	return strings.Join(parts, "; ")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// seed creates the catalog in the first region only, as an admin would: the other
// regions get it through the catalog's events (product.upserted, carried by the
// shovels). Once every region has every product, each region's share of the stock goes
// in its warehouse w-<region> (shares are each region's own: never replicated).
func seed(s *node.RegionsStack, admin string, plan stockPlan) error {
	first := s.Regions[0]
	for _, sku := range sortedKeys(plan) {
		if _, err := gql(first.Instance.URL(), admin, `mutation($s: ID!, $n: String!) { upsertProduct(input: {sku: $s, name: $n, priceCents: 1500, currency: "USD"}) { sku } }`,
			map[string]any{"s": sku, "n": sku}); err != nil {
			return fmt.Errorf("region %s: %w", first.Name, err)
		}
	}
	for _, r := range s.Regions[1:] {
		for _, sku := range sortedKeys(plan) {
			deadline := time.Now().Add(30 * time.Second)
			for {
				data, err := gql(r.Instance.URL(), admin, `query($s: ID!) { product(sku: $s) { sku } }`, map[string]any{"s": sku})
				if err == nil && strings.Contains(string(data), `"sku"`) {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("region %s: product %s created in %s never arrived (%v)", r.Name, sku, first.Name, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	for _, r := range s.Regions {
		for _, sku := range sortedKeys(plan) {
			if n, ok := plan[sku][r.Name]; ok {
				if _, err := gql(r.Instance.URL(), admin, `mutation($s: ID!, $w: ID!, $n: Int!) { setStock(sku: $s, warehouse: $w, onHand: $n) { onHand } }`,
					map[string]any{"s": sku, "w": "w-" + r.Name, "n": n}); err != nil {
					return fmt.Errorf("region %s: %w", r.Name, err)
				}
			}
		}
	}
	return nil
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// gql posts one GraphQL request and returns its data, or its first error.
func gql(base, token, query string, vars map[string]any) (json.RawMessage, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, base+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data   json.RawMessage
		Errors []struct{ Message string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	if len(out.Errors) > 0 {
		return nil, fmt.Errorf("%s", out.Errors[0].Message)
	}
	return out.Data, nil
}
