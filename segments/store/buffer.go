package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/redis/go-redis/v9"
)

var (
	//go:embed add.lua
	addSource string
	//go:embed done.lua
	doneSource string
	//go:embed dequeue.lua
	dequeueSource string
)

// Buffer is the span buffer's store in Redis: Ingest adds spans to their segments,
// Flush takes the segments that went quiet, Done removes them once they were
// produced. It works on a single Redis and on a Redis Cluster.
//
// A Buffer is safe for concurrent use: its state lives in Redis, and what it keeps
// in memory (scripts, codecs) is set at construction or once on first use.
type Buffer struct {
	client  redis.UniversalClient
	cluster bool
	cfg     Config
	keys    keys

	add, done, dequeue *redis.Script

	// encoder is nil when compression is off. decoder is built on first need, since
	// compressed payloads may be met even with compression off (after a config change).
	encoder     *zstd.Encoder
	decoderOnce sync.Once
	decoder     *zstd.Decoder
	decoderErr  error

	// clusterIngest serialises the scripts and queue updates of concurrent batches
	// on a Cluster. There the queue update is a round trip of its own after the
	// scripts (the queues live in other slots), so two batches interleaving could
	// queue a segment that the other batch's script had just merged away and drop
	// the live one. On a single Redis the script updates the queues atomically.
	clusterIngest sync.Mutex

	// markerMu guards markers, the tokens of the namespace's markers this buffer
	// last saw in Redis by key (a key is missing before its first check), and, on a
	// Cluster, markerSet, the marker keys of the slot map read at markerSetAt; see
	// markerKeys and checkMarkers.
	markerMu    sync.Mutex
	markers     map[string]string
	markerSet   []string
	markerSetAt time.Time

	// flushed is what Done removed within the redelivery window, rewritten into
	// Redis when it loses its data.
	flushed flushedLog
}

// New returns a Buffer on client with cfg, after filling in cfg's defaults and
// validating it. It does not talk to Redis: the Lua scripts are loaded on first use,
// and again whenever Redis has forgotten them.
func New(client redis.UniversalClient, cfg Config) (*Buffer, error) {
	if client == nil {
		return nil, errors.New("store: New needs a Redis client")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	_, cluster := client.(*redis.ClusterClient)
	b := &Buffer{
		client:  client,
		cluster: cluster,
		cfg:     cfg,
		keys:    keys{prefix: keyPrefix(cfg.Namespace)},
		add:     redis.NewScript(addSource),
		done:    redis.NewScript(doneSource),
		dequeue: redis.NewScript(dequeueSource),
	}
	if cfg.CompressionLevel > 0 {
		b.encoder, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(cfg.CompressionLevel)))
		if err != nil {
			return nil, fmt.Errorf("segments: zstd encoder: %w", err)
		}
	}
	return b, nil
}

func (b *Buffer) loadScripts(ctx context.Context) error {
	for _, s := range []*redis.Script{b.add, b.done, b.dequeue} {
		if err := s.Load(ctx, b.client).Err(); err != nil {
			return fmt.Errorf("segments: loading Lua script into Redis: %w", err)
		}
	}
	return nil
}

// pipeline runs what fill queues in one pipeline and returns the first error of its
// commands. If Redis has forgotten the scripts (restart, failover, SCRIPT FLUSH), it
// loads them and runs the whole pipeline once more; every pipeline given here is
// idempotent.
func (b *Buffer) pipeline(ctx context.Context, fill func(redis.Pipeliner)) error {
	for attempt := 0; ; attempt++ {
		cmds, _ := b.client.Pipelined(ctx, func(p redis.Pipeliner) error { fill(p); return nil })
		var first error
		noScript := false
		for _, c := range cmds {
			err := c.Err()
			if err == nil || errors.Is(err, redis.Nil) {
				continue
			}
			if redis.HasErrorPrefix(err, "NOSCRIPT") {
				noScript = true
			} else if first == nil {
				first = err
			}
		}
		if first != nil {
			return first
		}
		if !noScript {
			return nil
		}
		if attempt > 0 {
			return errors.New("segments: Redis keeps answering NOSCRIPT after the scripts were loaded")
		}
		if err := b.loadScripts(ctx); err != nil {
			return err
		}
	}
}
