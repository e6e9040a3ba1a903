package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/checkout-backend/checkout/graph"
	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/platform/config"
)

const persistedUsage = `usage: checkout persisted list|verify [MANIFEST]

  list     print the operations of a persisted query manifest
  verify   check each operation: its id is the hash of its body, it validates against
           this build's schema, and it is within the GraphQL limits (GRAPHQL_MAX_*);
           exits 1 when one is not

MANIFEST defaults to $PERSISTED_QUERIES_MANIFEST. Accepted: Apollo's
{"format":"apollo-persisted-query-manifest","version":1,"operations":[...]} and a
{"<hash>": "<document>"} map (GraphQL Codegen's persistedDocuments, Relay).
`

func runPersisted(args []string, out io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "verify") {
		fmt.Fprint(os.Stderr, persistedUsage)
		return errors.New("persisted: say list or verify")
	}
	fs := flag.NewFlagSet("persisted "+args[0], flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, persistedUsage) }
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	path := fs.Arg(0)
	if path == "" {
		path = cfg.GraphQL.Manifest
	}
	if path == "" {
		return errors.New("persisted: name a manifest file (or set PERSISTED_QUERIES_MANIFEST)")
	}
	m, err := gqlhttp.LoadManifest(path)
	if err != nil {
		return err
	}
	if args[0] == "list" {
		return listManifest(m, out)
	}
	return verifyManifest(m, cfg, out)
}

func listManifest(m *gqlhttp.Manifest, out io.Writer) error {
	fmt.Fprintf(out, "%d operations (%s)\n", m.Len(), m.Format)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tNAME")
	for _, op := range m.Operations {
		typ, name := describe(op)
		fmt.Fprintf(tw, "%s\t%s\t%s\n", op.ID, typ, name)
	}
	return tw.Flush()
}

func verifyManifest(m *gqlhttp.Manifest, cfg config.Config, out io.Writer) error {
	limits := gqlhttp.Limits{
		MaxComplexity: cfg.GraphQL.MaxComplexity, MaxDepth: cfg.GraphQL.MaxDepth, MaxAliases: cfg.GraphQL.MaxAliases,
		MaxRootFields: cfg.GraphQL.MaxRootFields, MaxBodyBytes: cfg.GraphQL.MaxBodyBytes,
	}.WithDefaults()
	introspection := cfg.Introspection()
	failed := 0
	for _, op := range m.Operations {
		typ, name := describe(op)
		var problems []string
		if op.HashAlgorithm() == "" {
			problems = append(problems, "the id is not the SHA-256 (nor SHA-1, MD5) of the body")
		} else if m.Format == gqlhttp.ManifestFormatApollo && op.HashAlgorithm() != "sha256" {
			problems = append(problems, "the id is not the SHA-256 of the body (Apollo's format says it is)")
		}
		reports, errs := graph.CheckDocument(op.Body, limits, introspection)
		for _, e := range errs {
			problems = append(problems, e.Message)
		}
		if len(reports) > 1 {
			problems = append(problems, fmt.Sprintf("the body holds %d operations; a persisted document holds one (and its fragments)", len(reports)))
		}
		if len(problems) > 0 {
			failed++
			fmt.Fprintf(out, "FAIL  %s %s %s\n", op.ID, typ, name)
			for _, p := range problems {
				fmt.Fprintf(out, "      - %s\n", p)
			}
			continue
		}
		r := reports[0]
		fmt.Fprintf(out, "ok    %s %s %s (complexity %d, depth %d, aliases %d, root fields %d)\n",
			op.ID, typ, name, r.Complexity, r.Shape.Depth, r.Shape.Aliases, r.Shape.RootFields)
	}
	fmt.Fprintf(out, "%d operations: %d ok, %d failed (limits: complexity %d, depth %d, aliases %d, root fields %d)\n",
		m.Len(), m.Len()-failed, failed, limits.MaxComplexity, limits.MaxDepth, limits.MaxAliases, limits.MaxRootFields)
	if failed > 0 {
		return fmt.Errorf("persisted: %d of %d operations failed verification", failed, m.Len())
	}
	return nil
}

// describe returns the type and name of an operation, from the manifest or its body.
func describe(op gqlhttp.ManifestOperation) (typ, name string) {
	typ, name = op.Type, op.Name
	if typ != "" && name != "" {
		return typ, name
	}
	doc, err := parser.ParseQuery(&ast.Source{Input: op.Body})
	if err != nil || len(doc.Operations) == 0 {
		return or(typ, "?"), or(name, "?")
	}
	return or(typ, string(doc.Operations[0].Operation)), or(name, or(doc.Operations[0].Name, "(anonymous)"))
}

func or(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}
