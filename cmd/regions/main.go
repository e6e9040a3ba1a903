// Command regions runs two regions of the checkout backend on this machine, without
// Docker (make regions), and the chaos run over them (make regions-chaos): each region
// its own PostgreSQL, RabbitMQ (with the shovel plugin) and instance, every link
// between them through toxiproxy.
//
//	regions up    [-dir .regions]         start, seed, print the addresses; Ctrl-C stops it all
//	regions chaos [-dir .regions-chaos]   load in both regions, WAN latency, a partition, a
//	                                      PostgreSQL leader killed (Patroni fails over), a
//	                                      broker restarted; heal, drain; check the
//	                                      invariants; exit 1 if one broke
//
// -patroni gives each region etcd and three PostgreSQL nodes under Patroni (the default
// for chaos; make regions runs one server per region).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/platform/auth"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: regions up|chaos [-dir DIR] [-bin bin/checkout]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", "", "the stack's directory (default .regions, .regions-chaos)")
	bin := fs.String("bin", "bin/checkout", "the checkout binary")
	rate := fs.Int("rate", 15, "chaos: checkouts a second in each region")
	phase := fs.Duration("phase", 8*time.Second, "chaos: how long each phase of the sale lasts")
	patroni := fs.Bool("patroni", os.Args[1] == "chaos", "each region's database under Patroni (etcd, three PostgreSQL nodes) instead of one server; default for chaos")
	fs.Parse(os.Args[2:])
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "up":
		err = up(ctx, dirOr(*dir, ".regions"), *bin, *patroni)
	case "chaos":
		err = chaos(ctx, dirOr(*dir, ".regions-chaos"), *bin, *rate, *phase, *patroni)
	default:
		err = fmt.Errorf("unknown command %q (up, chaos)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "regions %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func dirOr(dir, def string) string {
	if dir == "" {
		return def
	}
	return dir
}

// regionEnv is every instance's configuration beyond the stack's: a rebalancer that
// reacts within seconds, and a sweeper that folds sales every second.
var regionEnv = []string{"REBALANCE_LOW=5", "REBALANCE_TARGET=25", "REBALANCE_INTERVAL=250ms", "REBALANCE_REASK=2s",
	"REBALANCE_IDLE=3s", "SWEEP_INTERVAL=1s", "WORKER_RETRY_DELAYS=200ms,500ms,1s", "OUTBOX_POLL_INTERVAL=200ms"}

func startStack(ctx context.Context, dir, bin string, patroni bool) (*node.RegionsStack, error) {
	toxi, err := exec.Command("go", "tool", "-n", "github.com/Shopify/toxiproxy/v2/cmd/server").Output()
	if err != nil {
		return nil, fmt.Errorf("build toxiproxy (go tool): %w", err)
	}
	upCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return node.UpRegions(upCtx, node.RegionsOptions{Dir: dir, Bin: bin, ToxiproxyBin: strings.TrimSpace(string(toxi)),
		Env: regionEnv, Log: os.Stdout, Patroni: patroni})
}

func up(ctx context.Context, dir, bin string, patroni bool) error {
	fmt.Println("regions: starting east and west (PostgreSQL, RabbitMQ with shovels, one instance each, links through toxiproxy)...")
	s, err := startStack(ctx, dir, bin, patroni)
	if err != nil {
		return err
	}
	defer s.Down()
	admin, err := auth.Sign(s.JWTSecret, "regions-admin", []string{"admin"}, 24*time.Hour)
	if err != nil {
		return err
	}
	if err := seed(s, admin, demoStock); err != nil {
		return err
	}
	fmt.Printf("\n%s\n  admin token (24h): %s\n", s.Describe(), admin)
	fmt.Printf("  stock: %s\n", describeStock(demoStock))
	fmt.Printf("  cut the link east->west's broker: curl -s -XPOST %s/proxies/east-to-west-amqp -d '{\"enabled\":false}'\n", s.Toxiproxy.API)
	fmt.Printf("  (every link: curl -s %s/proxies; enabled:true heals)\n\n  Ctrl-C stops everything.\n", s.Toxiproxy.API)
	<-ctx.Done()
	fmt.Println("\nregions: stopping...")
	return nil
}
