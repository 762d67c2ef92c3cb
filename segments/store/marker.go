package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// ErrRedisLost means Redis no longer holds what this buffer wrote: a marker the
// buffer keeps there is gone or was replaced (a restart without persistence, a
// failover to an empty replica, FLUSHALL; on a Cluster, of any one master). Spans
// whose offsets were not committed must be read again from Kafka.
var ErrRedisLost = errors.New("store: Redis lost the span buffer's data (its marker is gone)")

// markerRefresh is how often a buffer on a Cluster reads the slot map again, so
// that a master that took over slots gets a marker of its own.
const markerRefresh = time.Minute

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// markerKeys returns the keys of the markers a flush checks: on a single Redis the
// namespace's one marker; on a Cluster one per slot range of the slot map, each in
// a slot of its range, so that every master holds one and the loss of any master's
// data is noticed (a master holding no slot holds no span either). The Cluster's
// slot map is read on first use and again every markerRefresh; a range new to the
// buffer adopts the marker it finds (or writes one), as on a first start.
func (b *Buffer) markerKeys(ctx context.Context) ([]string, error) {
	if !b.cluster {
		return []string{b.keys.marker()}, nil
	}
	b.markerMu.Lock()
	keys, at := b.markerSet, b.markerSetAt
	b.markerMu.Unlock()
	if keys != nil && time.Since(at) < markerRefresh {
		return keys, nil
	}
	shards, err := b.client.ClusterShards(ctx).Result()
	if err != nil {
		if keys != nil {
			// The old map still names a marker on every master it knew.
			b.cfg.Logger.Warn("reading the Redis Cluster's slot map failed; checking the markers of the last one", zap.Error(err))
			return keys, nil
		}
		return nil, fmt.Errorf("store: reading the Redis Cluster's slot map for its markers: %w", err)
	}
	keys = nil // a new slice: the old one may be in use
	for _, s := range shards {
		for _, r := range s.Slots {
			keys = append(keys, b.keys.slotMarker(tagInSlots(r.Start, r.End)))
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	b.markerMu.Lock()
	defer b.markerMu.Unlock()
	b.markerSet, b.markerSetAt = keys, time.Now()
	// Markers of ranges that are gone are no longer checked.
	maps.DeleteFunc(b.markers, func(k, _ string) bool { return !slices.Contains(keys, k) })
	return keys, nil
}

// tagInSlots returns the first of "0", "1", "2", ... whose hash slot, as a Cluster
// hash tag, lies in [lo, hi]: every buffer of a namespace picks the same one for a
// range.
func tagInSlots(lo, hi int64) string {
	for i := 0; ; i++ {
		tag := strconv.Itoa(i)
		if s := int64(slotOf(tag)); s >= lo && s <= hi {
			return tag
		}
	}
}

// slotOf returns the Cluster hash slot of a hash tag: CRC16 (XMODEM) modulo 16384.
func slotOf(tag string) uint16 {
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc ^= uint16(tag[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % clusterSlots
}

// readMarkers queues a read of each marker key on p, with its expiry refreshed: a
// marker lives as long as flushes run.
func (b *Buffer) readMarkers(ctx context.Context, p redis.Pipeliner, keys []string) []*redis.StringCmd {
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = p.GetEx(ctx, k, b.cfg.TTL)
	}
	return cmds
}

// knownMarkers returns a copy of the markers this buffer last saw, by key; a key
// is missing before its first check.
func (b *Buffer) knownMarkers() map[string]string {
	b.markerMu.Lock()
	defer b.markerMu.Unlock()
	return maps.Clone(b.markers)
}

// checkMarkers compares the markers a flush read (cmds, for keys) with the ones the
// buffer knew when the read was sent (before). A marker the buffer had not seen is
// adopted, or written if there is none. A marker gone or replaced is written anew,
// and the loss logged and counted once for the buffer; then checkMarkers returns
// ErrRedisLost. It returns the markers now in force.
func (b *Buffer) checkMarkers(ctx context.Context, before map[string]string, keys []string, cmds []*redis.StringCmd) (map[string]string, error) {
	b.markerMu.Lock()
	defer b.markerMu.Unlock()
	if b.markers == nil {
		b.markers = make(map[string]string, len(keys))
	}
	now := make(map[string]string, len(keys))
	var lost []string
	reported := false
	for i, key := range keys {
		got, isNil := cmds[i].Val(), errors.Is(cmds[i].Err(), redis.Nil)
		prev, cur := before[key], b.markers[key]
		switch {
		case prev == "" && cur != "":
			// Another flush adopted one since this read was sent; the end of this
			// flush checks against it.
			now[key] = cur
			continue
		case prev == "":
			// A first start, or a master emptied while no offsets of this buffer
			// were waiting on it: nothing is missing.
		case !isNil && got == prev:
			now[key] = prev
			continue
		case cur != prev:
			// Another flush of this buffer has reported the loss already.
			now[key], reported = cur, true
			continue
		default:
			state := "replaced"
			if isNil {
				state = "missing"
			}
			lost = append(lost, key+" "+state)
		}
		token, err := b.markerOrNew(ctx, key, got, isNil)
		if err != nil {
			return nil, err
		}
		b.markers[key], now[key] = token, token
	}
	switch {
	case len(lost) > 0:
		b.cfg.Metrics.Increment("spans.buffer.redis_lost", 1)
		b.cfg.Logger.Error("Redis lost the span buffer's data: a marker is gone or was replaced; the spans not yet committed are read again from Kafka",
			zap.Strings("markers", lost))
		// Before the rewind reads them again: see flushedLog.
		if n, err := b.rewriteFlushed(ctx); err != nil {
			b.cfg.Logger.Warn("the records of spans flushed before the loss could not be rewritten; copies of them read again may come out a second time", zap.Error(err))
		} else if n > 0 {
			b.cfg.Logger.Info("rewrote the records of spans flushed before the Redis loss", zap.Int("spans", n))
		}
		return now, fmt.Errorf("%w (marker %s)", ErrRedisLost, strings.Join(lost, ", "))
	case reported:
		return now, fmt.Errorf("%w (a marker changed)", ErrRedisLost)
	}
	return now, nil
}

// markerOrNew returns the marker read (got), or, when there was none (isNil), the
// one establishMarker writes.
func (b *Buffer) markerOrNew(ctx context.Context, key, got string, isNil bool) (string, error) {
	if !isNil {
		return got, nil
	}
	return b.establishMarker(ctx, key)
}

// establishMarker writes a new marker at key unless another buffer of the namespace
// already has, and returns the marker in Redis.
func (b *Buffer) establishMarker(ctx context.Context, key string) (string, error) {
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

// confirmMarkers checks, after a flush loaded segments, that the markers are still
// the ones in force when it started: otherwise Redis was emptied during the load
// and what was loaded may be partial.
func (b *Buffer) confirmMarkers(ctx context.Context, start map[string]string) error {
	keys := slices.Sorted(maps.Keys(start))
	var cmds []*redis.StringCmd
	if err := b.pipeline(ctx, func(p redis.Pipeliner) {
		cmds = make([]*redis.StringCmd, len(keys))
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
	}); err != nil {
		return fmt.Errorf("store: reading the markers: %w", err)
	}
	for i, k := range keys {
		if cmds[i].Val() != start[k] || errors.Is(cmds[i].Err(), redis.Nil) {
			if _, err := b.checkMarkers(ctx, start, keys, cmds); err != nil {
				return err
			}
			return fmt.Errorf("%w (marker %s changed during a flush)", ErrRedisLost, k)
		}
	}
	return nil
}
