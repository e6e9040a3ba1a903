package layers_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// module is the import path of this module; rules name its packages relative to it.
const module = "github.com/checkout-backend/checkout"

// A part is a set of packages: mod("graph/...") is graph and every package below it,
// mod("outbox") that package alone, ext("github.com/uptrace/bun") a module outside
// this one with all its packages.
type part func(path string) bool

func mod(rel string) part {
	if base, ok := strings.CutSuffix(rel, "/..."); ok {
		base = module + "/" + base
		return func(p string) bool { return p == base || strings.HasPrefix(p, base+"/") }
	}
	return func(p string) bool { return p == module+"/"+rel }
}

func ext(path string) part {
	return func(p string) bool { return p == path || strings.HasPrefix(p, path+"/") }
}

func anyOf(parts ...part) part {
	return func(p string) bool { return slices.ContainsFunc(parts, func(f part) bool { return f(p) }) }
}

// The parts.
var (
	// domain is the model and its ports: no transport, no database, no broker.
	domain = anyOf(mod("internal/checkout"), mod("internal/catalog"), mod("internal/event"),
		mod("internal/cardnum"), mod("internal/payment"), mod("internal/webhook"))
	graph    = mod("graph/...")
	platform = mod("internal/platform/...")
	cmd      = mod("cmd/...")
	// adapters talk to the world; only cmd/checkout (and tests) see them all.
	adapters = anyOf(mod("internal/store"), mod("internal/broker"), mod("outbox"), mod("workers"),
		mod("internal/feed"), mod("internal/redishold"), mod("internal/region"), mod("internal/analytics/..."),
		mod("internal/payment/stripe"), mod("internal/payment/sandbox"), mod("internal/payment/resilience"), graph)

	amqp     = ext("github.com/rabbitmq/amqp091-go")
	pgx      = ext("github.com/jackc/pgx")
	bun      = ext("github.com/uptrace/bun")
	gqlgen   = ext("github.com/99designs/gqlgen")
	gqlparse = ext("github.com/vektah/gqlparser")
	stripe   = ext("github.com/stripe/stripe-go")
	redis    = ext("github.com/redis/go-redis")
	uuid     = ext("github.com/google/uuid")
)

// A rule names the packages it holds for (from) and what they must never import:
// directly, or anywhere in their dependency closure.
type rule struct {
	says    string
	from    part
	closure bool
	forbid  func(from, to string) bool
}

func never(p part) func(from, to string) bool { return func(_, to string) bool { return p(to) } }

// domainExceptions are imports the domain has today beyond the standard library and
// uuid, each with its reason.
var domainExceptions = map[string]part{
	// The outbound-address policy (server-side request forgery) is the webhook
	// domain's own rule; ssrf is a leaf built on the standard library.
	module + "/internal/webhook": ext("code.dny.dev/ssrf"),
}

func rules(std func(string) bool) []rule {
	return []rule{
		{
			says: "the domain imports only the standard library, github.com/google/uuid and the domain",
			from: domain,
			forbid: func(from, to string) bool {
				if ok := domainExceptions[from]; ok != nil && ok(to) {
					return false
				}
				return !std(to) && !uuid(to) && !domain(to)
			},
		},
		{
			says: "the domain reaches no other part of the module, no database, broker, GraphQL or provider library", from: domain, closure: true,
			forbid: never(anyOf(func(p string) bool { return ext(module)(p) && !domain(p) }, amqp, pgx, bun, gqlgen, gqlparse, stripe, redis)),
		},
		{
			says: "graph knows no database or broker: no amqp091, pgx, bun, outbox, workers, store, broker, feed", from: graph, closure: true,
			forbid: never(anyOf(amqp, pgx, bun, mod("outbox"), mod("workers"), mod("internal/store"), mod("internal/broker"), mod("internal/feed"))),
		},
		{
			says: "workers, the broker and the feed know no GraphQL: no gqlgen, gqlparser, graph", closure: true,
			from:   anyOf(mod("workers"), mod("internal/broker"), mod("internal/feed")),
			forbid: never(anyOf(gqlgen, gqlparse, graph)),
		},
		{
			says: "the outbox and workers never import graph", closure: true,
			from: anyOf(mod("outbox"), mod("workers")), forbid: never(graph),
		},
		{
			says: "the outbox and the store know no AMQP (only the broker does) and no GraphQL", closure: true,
			from: anyOf(mod("outbox"), mod("internal/store")), forbid: never(anyOf(amqp, gqlgen, gqlparse, graph)),
		},
		{
			says: "internal/platform is a leaf: no adapter, no amqp091, pgx, bun, gqlgen or gqlparser", from: platform, closure: true,
			forbid: func(from, to string) bool {
				return adapters(to) || cmd(to) || amqp(to) || pgx(to) || bun(to) || gqlgen(to) || gqlparse(to)
			},
		},
	}
}

// pkg is what go list says of a package.
type pkg struct {
	ImportPath   string
	Standard     bool
	Imports      []string          // resolved import paths
	ImportMap    map[string]string // import path in the source -> resolved, where they differ
	TestImports  []string
	XTestImports []string
}

// load lists every package of the module and its dependencies.
func load(t *testing.T) map[string]*pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Standard,Imports,ImportMap,TestImports,XTestImports", "./...")
	cmd.Dir = filepath.Join("..", "..")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]*pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[p.ImportPath] = &p
	}
	return pkgs
}

// imports are the resolved paths p imports.
func (p *pkg) imports() []string {
	seen := map[string]bool{}
	var out []string
	for _, path := range p.Imports {
		if r, ok := p.ImportMap[path]; ok {
			path = r
		}
		if !seen[path] {
			seen[path] = true
			out = append(out, path)
		}
	}
	return out
}

// violations are the chains from `from` to the packages forbid refuses: one step when
// closure is false; else found breadth first, so each chain is a shortest one, and not
// followed through a forbidden package (its own imports are its rule's business).
func violations(pkgs map[string]*pkg, from string, closure bool, forbid func(from, to string) bool) [][]string {
	parent := map[string]string{from: ""}
	queue := []string{from}
	var chains [][]string
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		p := pkgs[cur]
		if p == nil {
			continue
		}
		for _, next := range p.imports() {
			if _, seen := parent[next]; seen {
				continue
			}
			parent[next] = cur
			if forbid(from, next) {
				var chain []string
				for n := next; n != ""; n = parent[n] {
					chain = append([]string{n}, chain...)
				}
				chains = append(chains, chain)
				continue
			}
			if closure {
				queue = append(queue, next)
			}
		}
	}
	return chains
}

func short(chain []string) string {
	out := make([]string, len(chain))
	for i, p := range chain {
		out[i] = strings.TrimPrefix(p, module+"/")
		if p == module {
			out[i] = "."
		}
	}
	return strings.Join(out, " -> ")
}

func TestLayers(t *testing.T) {
	pkgs := load(t)
	std := func(p string) bool { return pkgs[p] != nil && pkgs[p].Standard }
	var own []string
	for path := range pkgs {
		if ext(module)(path) {
			own = append(own, path)
		}
	}
	slices.Sort(own)
	for _, r := range rules(std) {
		t.Run(r.says, func(t *testing.T) {
			held := 0
			for _, from := range own {
				if !r.from(from) {
					continue
				}
				held++
				for _, chain := range violations(pkgs, from, r.closure, r.forbid) {
					t.Errorf("%s", short(chain))
				}
			}
			if held == 0 {
				t.Fatal("the rule holds for no package: a part was moved or renamed")
			}
		})
	}
	// Nothing imports a command, not even a test.
	t.Run("nothing imports cmd/...", func(t *testing.T) {
		for _, from := range own {
			p := pkgs[from]
			for _, to := range slices.Concat(p.imports(), p.TestImports, p.XTestImports) {
				if cmd(to) && to != from {
					t.Errorf("%s", short([]string{from, to}))
				}
			}
		}
	})
}

// The chains printed are the shortest, and stop at the first forbidden package.
func TestViolations_ShortestChainStoppingAtTheForbidden(t *testing.T) {
	t.Parallel()
	pkgs := map[string]*pkg{
		module + "/graph":        {Imports: []string{module + "/a", module + "/b"}},
		module + "/a":            {Imports: []string{module + "/outbox"}},
		module + "/b":            {Imports: []string{module + "/a", "github.com/uptrace/bun"}},
		module + "/outbox":       {Imports: []string{"github.com/uptrace/bun/dialect"}},
		"github.com/uptrace/bun": {},
	}
	forbid := never(anyOf(mod("outbox"), bun))
	var got []string
	for _, c := range violations(pkgs, module+"/graph", true, forbid) {
		got = append(got, short(c))
	}
	want := []string{"graph -> a -> outbox", "graph -> b -> github.com/uptrace/bun"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("chains %q, want %q", got, want)
	}
	if got := violations(pkgs, module+"/graph", false, forbid); len(got) != 0 {
		t.Errorf("direct imports only: %v", got)
	}
}
