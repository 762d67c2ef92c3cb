package metrics

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// benchSeries are the series the benchmarks write: a few names with tags, like the
// figures a consumer loop records.
var benchSeries = func() [][]Tag {
	s := make([][]Tag, 8)
	for i := range s {
		s[i] = []Tag{{"phase", "poll"}, {"partition", fmt.Sprint(i)}}
	}
	return s
}()

// mutexMap is the baseline: one mutex around a map, the design Sentry's fix uses.
type mutexMap struct {
	mu sync.Mutex
	m  map[string]*int64
}

func (m *mutexMap) Increment(name string, value int64, tags ...Tag) {
	var buf [128]byte
	key := appendKey(buf[:0], kindCounter, name, tags)
	m.mu.Lock()
	p, ok := m.m[string(key)]
	if !ok {
		p = new(int64)
		m.m[string(key)] = p
	}
	*p += value
	m.mu.Unlock()
}

// BenchmarkIncrement compares Buffer.Increment with the mutex-and-map baseline from
// 1, 8 and 64 goroutines. Each goroutine cycles over benchSeries from its own start.
// Run with: go test -run '^$' -bench Increment -benchmem ./metrics
func BenchmarkIncrement(b *testing.B) {
	impls := []struct {
		name string
		new  func(b *testing.B) interface {
			Increment(string, int64, ...Tag)
		}
	}{
		{"mutexmap", func(*testing.B) interface {
			Increment(string, int64, ...Tag)
		} {
			return &mutexMap{m: map[string]*int64{}}
		}},
		{"buffer", func(b *testing.B) interface {
			Increment(string, int64, ...Tag)
		} {
			buf, err := NewBuffer(Noop{}, BufferConfig{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(buf.Close)
			return buf
		}},
	}
	for _, goroutines := range []int{1, 8, 64} {
		for _, impl := range impls {
			b.Run(fmt.Sprintf("%s/goroutines=%d", impl.name, goroutines), func(b *testing.B) {
				m := impl.new(b)
				for _, tags := range benchSeries {
					m.Increment("consumer.run.count", 1, tags...)
				}
				b.ReportAllocs()
				if goroutines == 1 {
					i := 0
					for b.Loop() {
						m.Increment("consumer.run.count", 1, benchSeries[i%len(benchSeries)]...)
						i++
					}
					return
				}
				// RunParallel starts parallelism*GOMAXPROCS goroutines; round up so
				// that there are at least as many as asked.
				procs := runtime.GOMAXPROCS(0)
				b.SetParallelism((goroutines + procs - 1) / procs)
				var next atomic.Int64
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := int(next.Add(1))
					for pb.Next() {
						m.Increment("consumer.run.count", 1, benchSeries[i%len(benchSeries)]...)
						i++
					}
				})
			})
		}
	}
}

// BenchmarkCounterAdd measures a pre-resolved Counter against Increment of the same
// series from one goroutine: the lookup the handle saves.
func BenchmarkCounterAdd(b *testing.B) {
	buf, err := NewBuffer(Noop{}, BufferConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(buf.Close)
	tags := benchSeries[0]
	b.Run("increment", func(b *testing.B) {
		for b.Loop() {
			buf.Increment("consumer.run.count", 1, tags...)
		}
	})
	b.Run("counter", func(b *testing.B) {
		c := buf.Counter("consumer.run.count", tags...)
		for b.Loop() {
			c.Add(1)
		}
	})
}
