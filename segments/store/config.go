package store

import (
	"fmt"
	"strings"
	"time"

	"github.com/creekstream/creek/metrics"
	"go.uber.org/zap"
)

// Config holds the buffer's options. The zero value of a field means its default.
type Config struct {
	// Timeout is how long a segment without a root may stay quiet before it is
	// flushed. Default 60 s.
	Timeout time.Duration
	// RootTimeout is how long a segment whose root has arrived may stay quiet before
	// it is flushed. Default 10 s.
	RootTimeout time.Duration
	// TTL is the expiry of every key the buffer writes, refreshed on each write.
	// Default 3600 s. It must exceed Timeout, or segments expire before they flush.
	TTL time.Duration
	// MaxSegmentBytes caps a segment's payload bytes: a subsegment that would push a
	// segment past it is detached into a segment of its own, and a flushed segment
	// larger than it is split over several messages. Default 10 MiB.
	MaxSegmentBytes int
	// MaxFlushSegments is the number of segments one flush over all assigned shards
	// takes at most. Default 500.
	MaxFlushSegments int
	// SegmentPageSize is the COUNT of each SSCAN that loads payloads. Default 100.
	SegmentPageSize int
	// CompressionLevel is the zstd level (1 to 22) used to store payloads; 0 or -1
	// stores them uncompressed. Default off.
	CompressionLevel int
	// FlushLockTTL, when positive, makes every flush take a lock per segment that
	// expires after this long, so that two flushers never emit the same segment at
	// once. Default 0 (off).
	FlushLockTTL time.Duration
	// Namespace, when not empty, is part of every key the buffer writes
	// (span-buf:<namespace>:...), so that several span buffers can share a Redis or a
	// Cluster without mixing their segments. Buffers that must see each other's
	// data, such as the members of one consumer group, share one. Default empty (the
	// keys of ../shared/spec/segments.md); segments.NewConsumer derives one from the
	// group and the input topic.
	Namespace string
	// RedeliveryWindow is how long the buffer remembers the ids of the spans it
	// flushed (span-buf:fs:{P:T}, one hash field a span), so that copies of them read
	// again from Kafka are dropped at ingest, counted in
	// spans.buffer.process_spans.redelivered, instead of coming out a second time in
	// a fragment of their segment. Such copies come after a crash or a rewind, when a
	// span's segment was flushed before its offset was committed. Default Timeout +
	// 2 min; negative turns it off.
	RedeliveryWindow time.Duration
	// Slice, when not empty, prefixes queue keys: span-buf:q:<slice>-<shard>. It
	// keeps the flush queues of buffers apart but not their segments; Namespace
	// keeps everything apart.
	Slice string

	// Logger receives what the buffer has to report. Default zap.NewNop().
	Logger *zap.Logger
	// Metrics receives the buffer's metrics, named spans.buffer.*. Default
	// metrics.Noop{}.
	Metrics metrics.Metrics
}

// Defaults of Config.
const (
	DefaultTimeout          = 60 * time.Second
	DefaultRootTimeout      = 10 * time.Second
	DefaultTTL              = 3600 * time.Second
	DefaultMaxSegmentBytes  = 10 << 20
	DefaultMaxFlushSegments = 500
	DefaultSegmentPageSize  = 100
	// defaultRedeliveryGrace is what the default RedeliveryWindow adds to Timeout:
	// the time for a dead consumer to be noticed (a session timeout, 45 s by
	// default), for its partitions to be assigned again and for their uncommitted
	// offsets to be read again.
	defaultRedeliveryGrace = 2 * time.Minute
)

// withDefaults returns c with every unset field at its default and validates it.
func (c Config) withDefaults() (Config, error) {
	setDefault(&c.Timeout, DefaultTimeout)
	setDefault(&c.RootTimeout, DefaultRootTimeout)
	setDefault(&c.TTL, DefaultTTL)
	setDefault(&c.MaxSegmentBytes, DefaultMaxSegmentBytes)
	setDefault(&c.MaxFlushSegments, DefaultMaxFlushSegments)
	setDefault(&c.SegmentPageSize, DefaultSegmentPageSize)
	if c.RedeliveryWindow == 0 {
		c.RedeliveryWindow = c.Timeout + defaultRedeliveryGrace
	}
	if c.CompressionLevel == -1 {
		c.CompressionLevel = 0
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Metrics == nil {
		c.Metrics = metrics.Noop{}
	}

	switch {
	case c.Timeout < 0 || c.RootTimeout < 0 || c.TTL < 0 || c.FlushLockTTL < 0:
		return c, fmt.Errorf("store: Config durations must not be negative (Timeout %v, RootTimeout %v, TTL %v, FlushLockTTL %v)",
			c.Timeout, c.RootTimeout, c.TTL, c.FlushLockTTL)
	case c.RootTimeout > c.Timeout:
		return c, fmt.Errorf("store: Config.RootTimeout (%v) must not exceed Config.Timeout (%v)", c.RootTimeout, c.Timeout)
	case c.TTL <= c.Timeout:
		return c, fmt.Errorf("store: Config.TTL (%v) must exceed Config.Timeout (%v), or segments expire before they are flushed", c.TTL, c.Timeout)
	case c.TTL%time.Second != 0:
		return c, fmt.Errorf("store: Config.TTL (%v) must be whole seconds", c.TTL)
	case c.FlushLockTTL%time.Millisecond != 0:
		return c, fmt.Errorf("store: Config.FlushLockTTL (%v) must be whole milliseconds", c.FlushLockTTL)
	case c.RedeliveryWindow > 0 && c.RedeliveryWindow%time.Millisecond != 0:
		return c, fmt.Errorf("store: Config.RedeliveryWindow (%v) must be whole milliseconds", c.RedeliveryWindow)
	case c.MaxSegmentBytes < 0:
		return c, fmt.Errorf("store: Config.MaxSegmentBytes (%d) must be positive", c.MaxSegmentBytes)
	case c.MaxFlushSegments < 0:
		return c, fmt.Errorf("store: Config.MaxFlushSegments (%d) must be positive", c.MaxFlushSegments)
	case c.SegmentPageSize < 0:
		return c, fmt.Errorf("store: Config.SegmentPageSize (%d) must be positive", c.SegmentPageSize)
	case c.CompressionLevel < -1 || c.CompressionLevel > 22:
		return c, fmt.Errorf("store: Config.CompressionLevel (%d) must be -1 or 0 (off) or a zstd level from 1 to 22", c.CompressionLevel)
	case strings.ContainsAny(c.Namespace, "{} \t\r\n"):
		return c, fmt.Errorf("store: Config.Namespace %q must not contain braces or whitespace: braces would change the keys' Cluster hash slots", c.Namespace)
	case strings.ContainsAny(c.Slice, "{}: \t\r\n"):
		return c, fmt.Errorf("store: Config.Slice %q must not contain braces, colons or whitespace", c.Slice)
	}
	return c, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}
