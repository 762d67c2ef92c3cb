package segments

import (
	"testing"
	"time"
)

func TestKafkaClock(t *testing.T) {
	wall := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	hour := time.Hour
	const grace = time.Minute
	cases := []struct {
		name  string
		setup func(c *kafkaClock)
		shard int32
		// at is how long after wall the clock is read.
		at   time.Duration
		want time.Time
	}{
		{
			name:  "nothing read: no time, nothing is due",
			setup: func(*kafkaClock) {},
			want:  time.Time{},
		},
		{
			name:  "nothing read for the grace: the wall clock",
			setup: func(c *kafkaClock) { c.at(0, wall) },
			at:    grace,
			want:  wall.Add(grace),
		},
		{
			name:  "moves on with the wall clock from the ingested time",
			setup: func(c *kafkaClock) { c.ingested(0, 0, wall.Add(-hour), wall) },
			at:    5 * time.Second,
			want:  wall.Add(-hour + 5*time.Second),
		},
		{
			name: "a lagging shard keeps its own time beside a leading one",
			setup: func(c *kafkaClock) {
				c.ingested(0, 0, wall.Add(-hour), wall)
				c.ingested(1, 0, wall, wall)
			},
			shard: 0,
			at:    time.Second,
			want:  wall.Add(-hour + time.Second),
		},
		{
			name: "a span read but not ingested holds its shard's time",
			setup: func(c *kafkaClock) {
				c.ingested(0, 0, wall, wall)
				c.hold(0, wall.Add(2*time.Second))
			},
			at:   time.Minute,
			want: wall.Add(2 * time.Second),
		},
		{
			name: "the oldest held span counts, not the first read",
			setup: func(c *kafkaClock) {
				c.ingested(0, 0, wall, wall)
				c.hold(0, wall.Add(3*time.Second))
				c.hold(0, wall.Add(time.Second))
				c.hold(0, wall.Add(4*time.Second))
			},
			at:   time.Minute,
			want: wall.Add(time.Second),
		},
		{
			name: "ingesting the first held spans moves the hold to the rest",
			setup: func(c *kafkaClock) {
				c.hold(0, wall.Add(time.Second))
				c.hold(0, wall.Add(3*time.Second))
				c.hold(0, wall.Add(2*time.Second))
				c.ingested(0, 2, wall.Add(time.Second), wall)
			},
			at:   time.Minute,
			want: wall.Add(2 * time.Second),
		},
		{
			name: "every held span ingested: the hold is gone",
			setup: func(c *kafkaClock) {
				c.hold(0, wall)
				c.ingested(0, 1, wall, wall)
			},
			at:   time.Minute,
			want: wall.Add(time.Minute),
		},
		{
			name: "spans held elsewhere do not hold this shard",
			setup: func(c *kafkaClock) {
				c.ingested(0, 0, wall, wall)
				c.hold(1, wall)
			},
			at:   time.Minute,
			want: wall.Add(time.Minute),
		},
		{
			name: "no hold while the flusher rejects",
			setup: func(c *kafkaClock) {
				c.ingested(0, 0, wall, wall)
				c.hold(0, wall)
				c.setUncapped(true)
			},
			at:   time.Minute,
			want: wall.Add(time.Minute),
		},
		{
			name: "a shard nothing was read on keeps no time beside known ones",
			setup: func(c *kafkaClock) {
				c.ingested(1, 0, wall.Add(-hour), wall)
				c.ingested(2, 0, wall, wall)
			},
			shard: 3,
			want:  time.Time{},
		},
		{
			name: "after the grace, a shard nothing was read on runs at the slowest known shard",
			setup: func(c *kafkaClock) {
				c.at(3, wall)
				c.ingested(1, 0, wall.Add(-hour), wall)
				c.ingested(2, 0, wall, wall)
			},
			shard: 3,
			at:    grace,
			want:  wall.Add(-hour + grace),
		},
		{
			name: "a shard not ingested yet is held by its own pending spans",
			setup: func(c *kafkaClock) {
				c.ingested(1, 0, wall, wall)
				c.hold(3, wall.Add(-hour))
			},
			shard: 3,
			want:  wall.Add(-hour),
		},
		{
			name: "setDrift moves every shard",
			setup: func(c *kafkaClock) {
				c.ingested(0, 0, wall.Add(-hour), wall)
				c.setDrift(hour)
			},
			want: wall.Add(hour),
		},
		{
			name:  "setDrift moves shards not seen yet",
			setup: func(c *kafkaClock) { c.setDrift(hour) },
			shard: 7,
			want:  wall.Add(hour),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newKafkaClock(grace)
			tc.setup(c)
			if got := c.at(tc.shard, wall.Add(tc.at)); !got.Equal(tc.want) {
				t.Fatalf("shard %d at wall+%v: clock %v, want %v", tc.shard, tc.at, got, tc.want)
			}
		})
	}
}
