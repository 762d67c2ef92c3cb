package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// ErrRedisLost means Redis no longer holds what this buffer wrote: the marker the
// buffer keeps there is gone or was replaced (a restart without persistence, a
// failover to an empty replica, FLUSHALL). Spans whose offsets were not committed
// must be read again from Kafka.
var ErrRedisLost = errors.New("store: Redis lost the span buffer's data (its marker is gone)")

// BatchSalts returns, by partition, the payload sets Ingest writes for spans: one
// identity ("<project>:<trace>/<salt>") per subsegment holding a span of that
// partition. A flush that loads a payload set reports the same identity in
// FlushedSegment.Salts, so a caller can tell when every span of a batch has been
// flushed. The salt is a hash of the subsegment's span ids, so two batches with the
// same spans share their identities.
func BatchSalts(spans []Span) map[int32][]string {
	subs := group(spans)
	out := make(map[int32][]string, 4)
	for _, sub := range subs {
		id := saltKey(sub.pt, sub.salt)
		for _, shard := range sub.shards {
			out[shard] = append(out[shard], id)
		}
	}
	return out
}

func saltKey(pt, salt string) string { return pt + "/" + salt }

// Salts returns the identities of the payload sets the flush loaded into s, in the
// form BatchSalts gives.
func (s FlushedSegment) Salts() []string {
	out := make([]string, len(s.salts))
	for i, salt := range s.salts {
		out[i] = saltKey(s.pt, salt)
	}
	return out
}

// knownMarker returns the marker this buffer last saw; "" before its first flush.
func (b *Buffer) knownMarker() string {
	b.markerMu.Lock()
	defer b.markerMu.Unlock()
	return b.marker
}

// checkMarker compares the marker a flush read (got, with isNil when the key was
// missing) with the one the buffer knew when the read was sent (before). On the
// buffer's first check it adopts the marker, writing one if there is none. When the
// marker is gone or was replaced it writes a new one, logs and counts the loss, once
// for the buffer, and returns ErrRedisLost. It returns the marker now in force.
func (b *Buffer) checkMarker(ctx context.Context, before, got string, isNil bool) (string, error) {
	b.markerMu.Lock()
	defer b.markerMu.Unlock()
	cur := b.marker
	switch {
	case before == "" && cur != "":
		// Another flush adopted one since this read was sent; the end of this
		// flush checks against it.
		return cur, nil
	case before == "":
		token, err := b.markerOrNew(ctx, got, isNil)
		if err != nil {
			return "", err
		}
		// A first start, or a Redis emptied while no offsets of this buffer were
		// waiting on it: nothing is missing.
		b.marker = token
		return token, nil
	case !isNil && got == before:
		return before, nil
	case cur != before:
		// Another flush of this buffer has reported the loss already.
		return cur, fmt.Errorf("%w (marker %s changed)", ErrRedisLost, b.keys.marker())
	}
	token, err := b.markerOrNew(ctx, got, isNil)
	if err != nil {
		return "", err
	}
	b.marker = token
	b.cfg.Metrics.Increment("spans.buffer.redis_lost", 1)
	b.cfg.Logger.Error("Redis lost the span buffer's data: its marker is gone or was replaced; the spans not yet committed are read again from Kafka",
		zap.String("marker", b.keys.marker()), zap.Bool("missing", isNil))
	state := "replaced"
	if isNil {
		state = "missing"
	}
	return token, fmt.Errorf("%w (marker %s %s)", ErrRedisLost, b.keys.marker(), state)
}

// markerOrNew returns the marker read (got), or, when there was none (isNil), the
// one establishMarker writes.
func (b *Buffer) markerOrNew(ctx context.Context, got string, isNil bool) (string, error) {
	if !isNil {
		return got, nil
	}
	return b.establishMarker(ctx)
}

// establishMarker writes a new marker unless another buffer of the namespace
// already has, and returns the marker in Redis.
func (b *Buffer) establishMarker(ctx context.Context) (string, error) {
	key := b.keys.marker()
	if err := b.client.SetNX(ctx, key, newToken(), b.cfg.TTL).Err(); err != nil {
		return "", fmt.Errorf("store: writing the marker %s: %w", key, err)
	}
	token, err := b.client.Get(ctx, key).Result()
	if err != nil {
		// Gone again at once (another FLUSHALL): the next flush sees it.
		return "", fmt.Errorf("store: reading the marker %s: %w", key, err)
	}
	return token, nil
}

// confirmMarker checks, after a flush loaded segments, that the marker is still the
// one read when it started: otherwise Redis was emptied during the load and what
// was loaded may be partial.
func (b *Buffer) confirmMarker(ctx context.Context, start string) error {
	got, err := b.client.Get(ctx, b.keys.marker()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("store: reading the marker: %w", err)
	}
	if got == start {
		return nil
	}
	if _, err := b.checkMarker(ctx, start, got, errors.Is(err, redis.Nil)); err != nil {
		return err
	}
	return fmt.Errorf("%w (marker %s changed during a flush)", ErrRedisLost, b.keys.marker())
}
