package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
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

// do posts one operation and decodes its data into out; any GraphQL error fails it. An
// answer of 429 or 503 (the service shedding load) is retried after its Retry-After,
// a few times.
func (c *graphQLClient) do(ctx context.Context, query string, vars map[string]any, out any) error {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		status, raw, retryAfter, err := c.post(ctx, body)
		if err != nil {
			return err
		}
		if (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) && attempt < 5 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(retryAfter):
			}
			continue
		}
		var r gqlResponse
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("HTTP %d: undecodable response: %s", status, snippet(raw))
		}
		if len(r.Errors) > 0 {
			e := r.Errors[0]
			return fmt.Errorf("HTTP %d: GraphQL error %s: %s (%d errors)", status, e.Extensions.Code, e.Message, len(r.Errors))
		}
		if status != http.StatusOK {
			return fmt.Errorf("HTTP %d: %s", status, snippet(raw))
		}
		if out != nil {
			return json.Unmarshal(r.Data, out)
		}
		return nil
	}
}

// post sends one request body; retryAfter is the answer's Retry-After (at most 2s,
// 200ms when absent).
func (c *graphQLClient) post(ctx context.Context, body []byte) (status int, raw []byte, retryAfter time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", acceptHeader)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, nil, 0, err
	}
	retryAfter = 200 * time.Millisecond
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		retryAfter = min(time.Duration(secs)*time.Second, 2*time.Second)
	}
	return resp.StatusCode, raw, retryAfter, nil
}

// createCatalog upserts the products and sets their stock, as many products per request
// as the service's default limits allow (GRAPHQL_MAX_ROOT_FIELDS 10, and as many
// aliases): the root fields of a mutation run in order, so a product exists before its
// stock is set.
func (c *graphQLClient) createCatalog(ctx context.Context, products []productSpec) error {
	const maxFields = 10
	var doc strings.Builder
	fields := 0
	flush := func() error {
		if fields == 0 {
			return nil
		}
		doc.WriteString("}")
		err := c.do(ctx, doc.String(), nil, nil)
		doc.Reset()
		fields = 0
		if err != nil {
			return fmt.Errorf("create catalog: %w", err)
		}
		return nil
	}
	for i, p := range products {
		need := 1 + len(p.Stock)
		if fields > 0 && fields+need > maxFields {
			if err := flush(); err != nil {
				return err
			}
		}
		if fields == 0 {
			doc.WriteString("mutation BenchSetup {\n")
		}
		fmt.Fprintf(&doc, "  p%d: upsertProduct(input: {sku: %s, name: %s, priceCents: %d, currency: \"USD\"}) { sku }\n",
			i, gqlString(p.SKU), gqlString("Bench product "+p.SKU), p.PriceCents)
		for j, wh := range sortedKeys(p.Stock) {
			fmt.Fprintf(&doc, "  s%d_%d: setStock(sku: %s, warehouse: %s, onHand: %d) { onHand }\n",
				i, j, gqlString(p.SKU), gqlString(wh), p.Stock[wh])
		}
		fields += need
	}
	return flush()
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
