package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// cmdEtcd runs a single-member etcd via go.etcd.io/etcd/server/v3/embed, at
// the version the chosen k8s.io/kubernetes release pins.
func cmdEtcd(args []string) int {
	fs := flag.NewFlagSet("etcd", flag.ExitOnError)
	dataDir := fs.String("data-dir", "", "etcd data directory (required)")
	port := fs.Int("port", 2379, "client port on 127.0.0.1")
	peerPort := fs.Int("peer-port", 2380, "peer port on 127.0.0.1")
	noFsync := fs.Bool("unsafe-no-fsync", false, "skip fsync (faster for throwaway test clusters; data may be lost on a crash)")
	logLevel := fs.String("log-level", "warn", "etcd log level")
	fs.Parse(args)
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "etcd: --data-dir is required")
		return 2
	}
	cfg := embed.NewConfig()
	cfg.Name = "k8s-lite"
	cfg.Dir = *dataDir
	cu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *port)}
	pu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *peerPort)}
	cfg.ListenClientUrls = []url.URL{cu}
	cfg.AdvertiseClientUrls = []url.URL{cu}
	cfg.ListenPeerUrls = []url.URL{pu}
	cfg.AdvertisePeerUrls = []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = *noFsync
	cfg.LogLevel = *logLevel
	// embed.NewConfig leaves these at 0 (etcd's own main sets them from flag
	// defaults), which logs every request as "expensive" at warn level.
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	cfg.WarningApplyDuration = embed.DefaultWarningApplyDuration

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-e.Server.ReadyNotify():
		fmt.Fprintf(os.Stderr, "etcd: ready, serving %s\n", cu.String())
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		fmt.Fprintln(os.Stderr, "etcd: not ready after 60s")
		return 1
	case s := <-sig:
		e.Close()
		fmt.Fprintln(os.Stderr, "etcd: stopped by", s)
		return 0
	}
	select {
	case err := <-e.Err():
		e.Close()
		fmt.Fprintln(os.Stderr, "etcd:", err)
		return 1
	case s := <-sig:
		e.Close()
		fmt.Fprintln(os.Stderr, "etcd: stopped by", s)
		return 0
	}
}
