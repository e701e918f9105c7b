// Package broker runs the embedded Kafka-protocol broker of `triage dev`:
// franz-go's kfake, persisted to disk, so the whole system runs in one
// process on a laptop and any Kafka client (kcat included) can talk to it.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Config of the embedded broker.
type Config struct {
	Addr       string   // host:port to listen on, e.g. 127.0.0.1:9092
	DataDir    string   // log segments, offsets and transaction state live here
	Partitions int      // partitions of seeded and auto-created topics
	Topics     []string // created on first start
}

// Broker is a running embedded broker.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
	once    sync.Once
}

// Start listens on cfg.Addr and reloads any state under cfg.DataDir.
func Start(cfg Config, log *slog.Logger) (*Broker, error) {
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: --kafka-addr %q: want host:port: %w", cfg.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("embedded broker: --kafka-addr %q: bad port", cfg.Addr)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("embedded broker: a data directory is required (--data-dir)")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	parts := max(cfg.Partitions, 1)
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		// kfake binds 127.0.0.1; honour the host the user asked for.
		kfake.ListenFn(func(network, addr string) (net.Listener, error) {
			_, p, _ := net.SplitHostPort(addr)
			return net.Listen(network, net.JoinHostPort(host, p))
		}),
		kfake.DataDir(cfg.DataDir),
		kfake.DefaultNumPartitions(parts),
		kfake.AllowAutoTopicCreation(),
		kfake.ClusterID("triage-dev"),
	}
	if len(cfg.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(int32(parts), cfg.Topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded broker on %s (data %s): %w", cfg.Addr, cfg.DataDir, err)
	}
	addrs := c.ListenAddrs()
	b := &Broker{cluster: c, addr: addrs[0]}
	log.Info("embedded Kafka broker listening", "addr", b.addr, "data_dir", cfg.DataDir, "partitions", parts)
	return b, nil
}

// Addr is the bootstrap address clients should use.
func (b *Broker) Addr() string { return b.addr }

// Run blocks until ctx ends, then closes the broker (flushing state to disk).
func (b *Broker) Run(ctx context.Context) error {
	<-ctx.Done()
	b.Close()
	return nil
}

// Close stops the broker now; later calls do nothing.
func (b *Broker) Close() { b.once.Do(b.cluster.Close) }
