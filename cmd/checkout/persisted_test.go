package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeManifest(t *testing.T, ops ...map[string]string) string {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"format": "apollo-persisted-query-manifest", "version": 1, "operations": ops})
	path := filepath.Join(t.TempDir(), "manifest.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func op(name, typ, body string) map[string]string {
	sum := sha256.Sum256([]byte(body))
	return map[string]string{"id": hex.EncodeToString(sum[:]), "name": name, "type": typ, "body": body}
}

func TestPersistedCommand(t *testing.T) {
	good := writeManifest(t,
		op("Products", "query", `query Products($first: Int) { products(first: $first) { edges { node { sku name } } } }`),
		op("NewCart", "mutation", `mutation NewCart { createCart { id } }`))

	var out bytes.Buffer
	if err := runPersisted([]string{"list", good}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "2 operations (apollo-persisted-query-manifest)") || !strings.Contains(out.String(), "mutation  NewCart") {
		t.Fatalf("list:\n%s", out.String())
	}

	out.Reset()
	if err := runPersisted([]string{"verify", good}, &out); err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "2 operations: 2 ok, 0 failed") {
		t.Fatalf("verify:\n%s", out.String())
	}

	wrongHash := op("Products", "query", `{ products { edges { cursor } } }`)
	wrongHash["id"] = strings.Repeat("0", 64)
	bad := writeManifest(t, wrongHash, op("Nope", "query", `query Nope { nope }`),
		op("Big", "query", `{ myOrders(first: 100) { edges { node { id items { sku product { sku name priceCents currency available } } } } } }`))
	out.Reset()
	err := runPersisted([]string{"verify", bad}, &out)
	if err == nil || !strings.Contains(out.String(), "3 operations: 0 ok, 3 failed") ||
		!strings.Contains(out.String(), "not the SHA-256") || !strings.Contains(out.String(), `Cannot query field "nope"`) ||
		!strings.Contains(out.String(), "complexity") {
		t.Fatalf("verify a bad manifest: %v\n%s", err, out.String())
	}

	t.Setenv("PERSISTED_QUERIES_MANIFEST", good)
	out.Reset()
	if err := runPersisted([]string{"list"}, &out); err != nil || !strings.Contains(out.String(), "Products") {
		t.Fatalf("list from PERSISTED_QUERIES_MANIFEST: %v %s", err, out.String())
	}
	if err := runPersisted([]string{"frobnicate"}, &out); err == nil {
		t.Fatal("an unknown subcommand")
	}
}
