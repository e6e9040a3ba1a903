// Command ha starts, reports on and stops the local self-healing stack (make ha;
// scripts/ha.sh): three etcd members, three PostgreSQL nodes under Patroni (strict
// synchronous mode), HAProxy, PgBouncer, a three-node RabbitMQ cluster and three
// `checkout serve` instances, without Docker, under one directory (default .ha).
//
//	ha up [-dir .ha] [-bin bin/checkout] [-instances 3]
//	ha status [-dir .ha]
//	ha down [-dir .ha]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/platform/auth"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: ha up|status|down [-dir .ha] [-bin bin/checkout] [-instances 3]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", ".ha", "the stack's directory")
	bin := fs.String("bin", "bin/checkout", "up: the checkout binary")
	instances := fs.Int("instances", 3, "up: checkout serve instances")
	fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "up":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		s, err := node.UpHA(ctx, node.HAOptions{Dir: *dir, Bin: *bin, Instances: *instances, Detached: true, Log: os.Stdout})
		if err != nil {
			fmt.Fprintf(os.Stderr, "ha up: %v\n", err)
			os.Exit(1)
		}
		token, _ := auth.Sign(s.JWTSecret, "ha-admin", []string{"admin"}, 24*time.Hour)
		fmt.Println()
		for _, line := range s.Status() {
			fmt.Println("  " + line)
		}
		fmt.Printf("\n  API (HAProxy): %s/graphql\n  DATABASE_URL=%s DATABASE_POOL_MODE=transaction\n  DATABASE_SESSION_URL=%s\n  DATABASE_READ_URL=%s\n  AMQP_URL=%s\n  (JWT_SECRET is in %s/%s)\n",
			s.APIURL, s.DatabaseURL, s.SessionURL, s.ReadURL, s.AMQPURL, s.Dir, node.HAStateFile)
		fmt.Printf("\n  admin token (24h): %s\n  stop it all with: make ha-down (scripts/ha.sh down)\n", token)
	case "status":
		s, err := node.LoadHA(*dir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ha status: no stack in %s (%v)\n", *dir, err)
			os.Exit(1)
		}
		for _, line := range s.Status() {
			fmt.Println(line)
		}
	case "down":
		s, err := node.LoadHA(*dir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ha down: no stack in %s (%v)\n", *dir, err)
			os.Exit(1)
		}
		s.Down()
		for _, line := range s.Status() {
			fmt.Println(line)
		}
	default:
		fmt.Fprintf(os.Stderr, "ha: unknown command %q (up, status, down)\n", os.Args[1])
		os.Exit(2)
	}
}
