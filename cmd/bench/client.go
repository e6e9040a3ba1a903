package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/auth"
)

// graphQLClient makes the bench's own (non-measured) GraphQL calls: the catalog setup.
type graphQLClient struct {
	url   string
	token string
	http  *http.Client
}

func newGraphQLClient(baseURL, secret, sub string, roles []string, ttl time.Duration) (*graphQLClient, error) {
	tok, err := auth.Sign(secret, sub, roles, ttl)
	if err != nil {
		return nil, err
	}
	return &graphQLClient{url: baseURL + "/graphql", token: tok, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// gqlError is one entry of a GraphQL response's errors.
type gqlError struct {
	Message    string `json:"message"`
	Extensions struct {
		Code string `json:"code"`
	} `json:"extensions"`
}

type gqlResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

// do posts one operation and decodes its data into out; any GraphQL error fails it.
func (c *graphQLClient) do(ctx context.Context, query string, vars map[string]any, out any) error {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", acceptHeader)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	var r gqlResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("HTTP %d: undecodable response: %s", resp.StatusCode, snippet(raw))
	}
	if len(r.Errors) > 0 {
		e := r.Errors[0]
		return fmt.Errorf("HTTP %d: GraphQL error %s: %s (%d errors)", resp.StatusCode, e.Extensions.Code, e.Message, len(r.Errors))
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, snippet(raw))
	}
	if out != nil {
		return json.Unmarshal(r.Data, out)
	}
	return nil
}

// createCatalog upserts the products and sets their stock, a batch of products per
// request (the root fields of a mutation run in order, so a product exists before its
// stock is set).
func (c *graphQLClient) createCatalog(ctx context.Context, products []productSpec) error {
	const batch = 25
	for start := 0; start < len(products); start += batch {
		end := min(start+batch, len(products))
		var doc strings.Builder
		doc.WriteString("mutation BenchSetup {\n")
		for i, p := range products[start:end] {
			fmt.Fprintf(&doc, "  p%d: upsertProduct(input: {sku: %s, name: %s, priceCents: %d, currency: \"USD\"}) { sku }\n",
				i, gqlString(p.SKU), gqlString("Bench product "+p.SKU), p.PriceCents)
			for j, wh := range sortedKeys(p.Stock) {
				fmt.Fprintf(&doc, "  s%d_%d: setStock(sku: %s, warehouse: %s, onHand: %d) { onHand }\n",
					i, j, gqlString(p.SKU), gqlString(wh), p.Stock[wh])
			}
		}
		doc.WriteString("}")
		if err := c.do(ctx, doc.String(), nil, nil); err != nil {
			return fmt.Errorf("create catalog: %w", err)
		}
	}
	return nil
}

// gqlString quotes s as a GraphQL string literal (JSON's escaping is valid GraphQL).
func gqlString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
