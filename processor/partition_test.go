package processor

import (
	"testing"
)

func TestCommittableMerge(t *testing.T) {
	a0 := Partition{Topic: "a", Index: 0}
	a1 := Partition{Topic: "a", Index: 1}
	b0 := Partition{Topic: "b", Index: 0}
	tests := []struct {
		name string
		x, y Committable
		want map[Partition]int64
	}{
		{"empty with empty", Committable{}, Committable{}, map[Partition]int64{}},
		{"empty with one", Committable{}, CommittableOf(a0, 5), map[Partition]int64{a0: 5}},
		{"one with empty", CommittableOf(a0, 5), Committable{}, map[Partition]int64{a0: 5}},
		{"same partition keeps the higher", CommittableOf(a0, 9), CommittableOf(a0, 5), map[Partition]int64{a0: 9}},
		{"same partition, higher second", CommittableOf(a0, 5), CommittableOf(a0, 9), map[Partition]int64{a0: 9}},
		{"two partitions", CommittableOf(a0, 5), CommittableOf(a1, 3), map[Partition]int64{a0: 5, a1: 3}},
		{
			"overlapping maps keep the highest per partition",
			CommittableFromMap(map[Partition]int64{a0: 5, a1: 7}),
			CommittableFromMap(map[Partition]int64{a1: 4, b0: 2}),
			map[Partition]int64{a0: 5, a1: 7, b0: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.x.Merge(tt.y)
			if want := CommittableFromMap(tt.want); !got.Equal(want) {
				t.Fatalf("%s.Merge(%s) = %s, want %s", tt.x, tt.y, got, want)
			}
			if back := tt.y.Merge(tt.x); !back.Equal(got) {
				t.Fatalf("merge is not symmetric: %s vs %s", back, got)
			}
		})
	}
}

func TestCommittableMergeSinglePartitionAllocatesNothing(t *testing.T) {
	p := Partition{Topic: "t", Index: 3}
	c := CommittableOf(p, 1)
	allocs := testing.AllocsPerRun(100, func() {
		c = c.Merge(CommittableOf(p, 2))
	})
	if allocs != 0 {
		t.Fatalf("single-partition Merge allocates %v times per call, want 0", allocs)
	}
	if o, _ := c.Get(p); o != 2 {
		t.Fatalf("merged offset %d, want 2", o)
	}
}

func TestCommittableEqual(t *testing.T) {
	a0 := Partition{Topic: "a", Index: 0}
	a1 := Partition{Topic: "a", Index: 1}
	tests := []struct {
		name string
		x, y Committable
		want bool
	}{
		{"both empty", Committable{}, Committable{}, true},
		{"empty map is empty", CommittableFromMap(map[Partition]int64{}), Committable{}, true},
		{"one and a map of one", CommittableOf(a0, 4), CommittableFromMap(map[Partition]int64{a0: 4}), true},
		{"different offset", CommittableOf(a0, 4), CommittableOf(a0, 5), false},
		{"different partition", CommittableOf(a0, 4), CommittableOf(a1, 4), false},
		{"subset", CommittableOf(a0, 4), CommittableFromMap(map[Partition]int64{a0: 4, a1: 1}), false},
		{"same maps", CommittableFromMap(map[Partition]int64{a0: 4, a1: 1}), CommittableFromMap(map[Partition]int64{a1: 1, a0: 4}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.x.Equal(tt.y); got != tt.want {
				t.Fatalf("%s.Equal(%s) = %v, want %v", tt.x, tt.y, got, tt.want)
			}
			if got := tt.y.Equal(tt.x); got != tt.want {
				t.Fatalf("%s.Equal(%s) = %v, want %v", tt.y, tt.x, got, tt.want)
			}
		})
	}
}

func TestCommittableString(t *testing.T) {
	tests := []struct {
		c    Committable
		want string
	}{
		{Committable{}, "{}"},
		{CommittableOf(Partition{Topic: "t", Index: 2}, 10), "{t/2:10}"},
		{
			CommittableFromMap(map[Partition]int64{
				{Topic: "b", Index: 0}:  1,
				{Topic: "a", Index: 10}: 3,
				{Topic: "a", Index: 2}:  2,
			}),
			"{a/2:2, a/10:3, b/0:1}",
		},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// BenchmarkCommittableMergeBatch merges the committables of a batch of broker
// messages, as Reduce and Batch do: 1000 messages over 4 partitions per op.
func BenchmarkCommittableMergeBatch(b *testing.B) {
	const n = 1000
	batch := make([]Committable, n)
	for i := range batch {
		batch[i] = CommittableOf(Partition{Topic: "t", Index: int32(i % 4)}, int64(i/4+1))
	}
	b.Run("Merge", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c Committable
			for _, m := range batch {
				c = c.Merge(m)
			}
		}
	})
	b.Run("MergeInto", func(b *testing.B) {
		b.ReportAllocs()
		m := make(map[Partition]int64, 4)
		for b.Loop() {
			clear(m)
			for _, c := range batch {
				c.MergeInto(m)
			}
		}
	})
}
