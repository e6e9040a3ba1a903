package gqlhttp

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// What this file adds to gqlgen's extension.AutomaticPersistedQuery, which looks a hash up
// in a cache, answers PersistedQueryNotFound and stores a newly sent text: the modes (off
// answers PERSISTED_QUERY_NOT_SUPPORTED, require runs only the documents of a manifest:
// trusted documents), the manifests themselves (Apollo's and the {hash: document} map), a
// strict reading of extensions.persistedQuery (400 with a code where gqlgen's errors have
// none, a hash taken with its "sha256:" prefix or in upper case), the hash-mismatch
// refusal with its code, and storing a text only once it has passed validation and every
// limit (gqlgen stores it before validation), and at most MaxQueryBytes of it.

// Mode says which documents the server runs.
type Mode string

const (
	// ModeOff runs documents sent as text only; a persisted query answers
	// PERSISTED_QUERY_NOT_SUPPORTED (Apollo's link then stops hashing).
	ModeOff Mode = "off"
	// ModeAllow runs text, automatic persisted queries and the manifest's hashes.
	ModeAllow Mode = "allow"
	// ModeRequire runs only the manifest's operations (trusted documents), by hash or
	// by identical text.
	ModeRequire Mode = "require"
)

// ParseMode reads PERSISTED_QUERIES; "" is allow.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return ModeAllow, nil
	case ModeOff, ModeAllow, ModeRequire:
		return m, nil
	}
	return "", fmt.Errorf("PERSISTED_QUERIES must be off, allow or require, not %q", s)
}

// DefaultMaxStoredQueryBytes is the largest query text stored as an automatic persisted
// query when PersistedOptions.MaxQueryBytes is 0 (a larger one still runs; its client
// just keeps sending the text).
const DefaultMaxStoredQueryBytes = 16 << 10

// PersistedOptions configure persisted queries.
type PersistedOptions struct {
	Mode Mode // "" is allow
	// Manifest lists trusted documents (required by ModeRequire).
	Manifest *Manifest
	// Cache stores automatic persisted queries (hash -> text); nil is an in-process LRU.
	// Use a RedisCache to share them between instances.
	Cache graphql.Cache[string]
	// MaxQueryBytes is the largest text stored (0: DefaultMaxStoredQueryBytes).
	MaxQueryBytes int
}

// Persisted holds the gqlgen extensions of persisted queries, to be installed in this
// order around the limits: Lookup (this package's checks, the manifest, then gqlgen's
// AutomaticPersistedQuery in allow mode) turns a hash into its document before anything
// else looks at the request; Register stores a newly sent automatic persisted query once
// it has passed validation and every limit, so only documents that run are kept.
type Persisted struct {
	Lookup   []graphql.HandlerExtension
	Register graphql.HandlerExtension
}

// NewPersisted builds the extensions of o.
func NewPersisted(o PersistedOptions) (Persisted, error) {
	mode := o.Mode
	if mode == "" {
		mode = ModeAllow
	}
	if _, err := ParseMode(string(mode)); err != nil {
		return Persisted{}, err
	}
	if mode == ModeRequire && o.Manifest.Len() == 0 {
		return Persisted{}, errors.New("PERSISTED_QUERIES=require needs a manifest of operations (PERSISTED_QUERIES_MANIFEST)")
	}
	cache := o.Cache
	if cache == nil {
		cache = lru.New[string](1000)
	}
	if o.MaxQueryBytes <= 0 {
		o.MaxQueryBytes = DefaultMaxStoredQueryBytes
	}
	cache = capped{Cache: cache, max: o.MaxQueryBytes}
	p := Persisted{Lookup: []graphql.HandlerExtension{&persistedLookup{mode: mode, manifest: o.Manifest}},
		Register: persistedRegister{cache: cache}}
	if mode == ModeAllow {
		p.Lookup = append(p.Lookup, extension.AutomaticPersistedQuery{Cache: deferred{cache}})
	}
	return p, nil
}

type persistedLookup struct {
	mode     Mode
	manifest *Manifest
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
} = (*persistedLookup)(nil)

func (p *persistedLookup) ExtensionName() string                   { return "PersistedQueries" }
func (p *persistedLookup) Validate(graphql.ExecutableSchema) error { return nil }

const registerStats = "PersistedQueryRegister"

// MutateOperationParameters answers from the manifest, refuses what the mode does not
// run, and leaves the rest of an automatic persisted query to gqlgen's extension, with a
// hash it can read.
func (p *persistedLookup) MutateOperationParameters(ctx context.Context, raw *graphql.RawParams) *gqlerror.Error {
	hash, present, gerr := persistedQueryOf(raw.Extensions)
	if gerr != nil {
		return gerr
	}
	if p.mode == ModeOff {
		if present {
			return newError(CodePersistedQueryNotSupported, "PersistedQueryNotSupported")
		}
		return nil
	}
	if !present {
		if p.mode == ModeRequire && !p.manifest.HasDocument(raw.Query) {
			return notInList()
		}
		return nil
	}
	sent := raw.Query != ""
	if doc, ok := p.manifest.Document(hash); ok {
		if sent && raw.Query != doc && sha256Hex(raw.Query) != hash {
			return hashMismatch()
		}
		raw.Query = doc
		delete(raw.Extensions, "persistedQuery") // answered: nothing for gqlgen's extension to do
		oc := graphql.GetOperationContext(ctx)
		oc.Stats.SetExtension("APQ", &extension.ApqStats{Hash: hash, SentQuery: sent})
		return nil
	}
	if p.mode == ModeRequire {
		switch {
		case !sent:
			return notFound()
		case p.manifest.HasDocument(raw.Query):
			delete(raw.Extensions, "persistedQuery") // a listed text under another id (e.g. a SHA-1 manifest)
			return nil
		}
		return notInList()
	}
	if sent && sha256Hex(raw.Query) != hash {
		return hashMismatch()
	}
	raw.Extensions["persistedQuery"] = map[string]any{"version": 1, "sha256Hash": hash}
	return nil
}

func notFound() *gqlerror.Error {
	return newError(CodePersistedQueryNotFound, "PersistedQueryNotFound")
}

func notInList() *gqlerror.Error {
	return newError(CodePersistedQueryNotInList,
		"this server runs only the operations of its persisted query manifest; this document is not one of them")
}

func hashMismatch() *gqlerror.Error {
	return newError(CodePersistedQueryHashMismatch, "extensions.persistedQuery.sha256Hash is not the SHA-256 of the query sent")
}

// persistedQueryOf reads extensions.persistedQuery {version: 1, sha256Hash}.
func persistedQueryOf(ext map[string]any) (hash string, present bool, _ *gqlerror.Error) {
	v, ok := ext["persistedQuery"]
	if !ok || v == nil {
		return "", false, nil
	}
	bad := newError(CodeBadRequest, `extensions.persistedQuery must be {"version": 1, "sha256Hash": "<hex>"}`)
	m, ok := v.(map[string]any)
	if !ok {
		return "", true, bad
	}
	switch m["version"].(type) {
	case json.Number, float64, int:
	default:
		return "", true, bad
	}
	if ver := fmt.Sprint(m["version"]); ver != "1" {
		return "", true, newError(CodeBadRequest, "unsupported persisted query version %s: only 1 is", ver)
	}
	h, ok := m["sha256Hash"].(string)
	if !ok || h == "" || len(h) > 256 {
		return "", true, bad
	}
	return normalizeID(h), true, nil
}

// deferred is the cache gqlgen's AutomaticPersistedQuery sees: lookups reach the cache, a
// store is only noted in the operation's stats for Register.
type deferred struct{ graphql.Cache[string] }

func (d deferred) Add(ctx context.Context, hash, query string) {
	graphql.GetOperationContext(ctx).Stats.SetExtension(registerStats, [2]string{hash, query})
}

type persistedRegister struct{ cache graphql.Cache[string] }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = persistedRegister{}

func (r persistedRegister) ExtensionName() string                   { return "PersistedQueriesRegister" }
func (r persistedRegister) Validate(graphql.ExecutableSchema) error { return nil }

func (r persistedRegister) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if v, ok := oc.Stats.GetExtension(registerStats).([2]string); ok {
		r.cache.Add(ctx, v[0], v[1])
	}
	return nil
}

// capped keeps oversized texts out of a cache.
type capped struct {
	graphql.Cache[string]
	max int
}

func (c capped) Add(ctx context.Context, key, value string) {
	if len(value) <= c.max {
		c.Cache.Add(ctx, key, value)
	}
}

func sha256Hex(s string) string {
	b := sha256.Sum256([]byte(s))
	return hex.EncodeToString(b[:])
}

// stripHashPrefix drops the algorithm prefix of a persisted document id ("sha256:<hex>").
func stripHashPrefix(id string) string {
	for _, p := range []string{"sha256:", "sha1:", "md5:"} {
		if len(id) > len(p) && strings.EqualFold(id[:len(p)], p) {
			return id[len(p):]
		}
	}
	return id
}

func normalizeID(id string) string { return strings.ToLower(stripHashPrefix(strings.TrimSpace(id))) }

// ManifestFormatApollo is the "format" of Apollo's persisted query manifests (made by
// @apollo/generate-persisted-query-manifest, Apollo iOS and Apollo Kotlin).
const ManifestFormatApollo = "apollo-persisted-query-manifest"

// ManifestFormatMap names the other accepted shape: one JSON object from hash to
// document, as GraphQL Codegen's client preset (persistedDocuments) and Relay write it.
const ManifestFormatMap = "document-map"

// ManifestOperation is one trusted document.
type ManifestOperation struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	Type string `json:"type,omitempty"`
	Body string `json:"body"`
}

// HashAlgorithm names the hash (sha256, sha1 or md5, hex) that ID is of Body, or "".
func (op ManifestOperation) HashAlgorithm() string {
	id := normalizeID(op.ID)
	s1, m5 := sha1.Sum([]byte(op.Body)), md5.Sum([]byte(op.Body))
	switch id {
	case sha256Hex(op.Body):
		return "sha256"
	case hex.EncodeToString(s1[:]):
		return "sha1"
	case hex.EncodeToString(m5[:]):
		return "md5"
	}
	return ""
}

// Manifest is a list of trusted documents, by id.
type Manifest struct {
	Format     string
	Operations []ManifestOperation
	byID       map[string]string
	bodies     map[string]bool
}

// LoadManifest reads a manifest file (see ParseManifest).
func LoadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("persisted query manifest: %w", err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("persisted query manifest %s: %w", path, err)
	}
	return m, nil
}

// ParseManifest reads either Apollo's manifest
//
//	{"format": "apollo-persisted-query-manifest", "version": 1,
//	 "operations": [{"id": "<sha256>", "name": "...", "type": "query", "body": "..."}]}
//
// or a document map {"<hash>": "<document>", ...} (GraphQL Codegen, Relay).
func ParseManifest(b []byte) (*Manifest, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	m := &Manifest{byID: map[string]string{}, bodies: map[string]bool{}}
	if f, ok := top["format"]; ok {
		var apollo struct {
			Format     string              `json:"format"`
			Version    int                 `json:"version"`
			Operations []ManifestOperation `json:"operations"`
		}
		if err := json.Unmarshal(b, &apollo); err != nil {
			return nil, fmt.Errorf("format %s: %w", f, err)
		}
		if apollo.Format != ManifestFormatApollo || apollo.Version != 1 {
			return nil, fmt.Errorf("unsupported manifest format %q version %d (want %q version 1, or a {hash: document} map)",
				apollo.Format, apollo.Version, ManifestFormatApollo)
		}
		m.Format, m.Operations = ManifestFormatApollo, apollo.Operations
	} else {
		m.Format = ManifestFormatMap
		for id, raw := range top {
			var body string
			if err := json.Unmarshal(raw, &body); err != nil {
				return nil, fmt.Errorf("the value of %q is not a string (want a {hash: document} map)", id)
			}
			m.Operations = append(m.Operations, ManifestOperation{ID: id, Body: body})
		}
		sort.Slice(m.Operations, func(i, j int) bool { return m.Operations[i].ID < m.Operations[j].ID })
	}
	if len(m.Operations) == 0 {
		return nil, errors.New("it lists no operations")
	}
	for i, op := range m.Operations {
		id := normalizeID(op.ID)
		if id == "" || strings.TrimSpace(op.Body) == "" {
			return nil, fmt.Errorf("operation %d (%s) has no id or no body", i+1, op.Name)
		}
		if prev, dup := m.byID[id]; dup && prev != op.Body {
			return nil, fmt.Errorf("id %s is listed twice with different documents", op.ID)
		}
		m.byID[id] = op.Body
		m.bodies[op.Body] = true
	}
	return m, nil
}

// Len is the number of operations (0 for a nil manifest).
func (m *Manifest) Len() int {
	if m == nil {
		return 0
	}
	return len(m.Operations)
}

// Document returns the document of an id (a hash, with or without "sha256:").
func (m *Manifest) Document(id string) (string, bool) {
	if m == nil {
		return "", false
	}
	d, ok := m.byID[normalizeID(id)]
	return d, ok
}

// HasDocument reports whether body is, character for character, a listed document.
func (m *Manifest) HasDocument(body string) bool {
	return m != nil && m.bodies[body]
}
