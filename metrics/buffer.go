package metrics

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// DefaultFlushInterval is how often a Buffer flushes when BufferConfig leaves it unset.
const DefaultFlushInterval = time.Second

// BufferConfig configures a Buffer. The zero value is valid.
type BufferConfig struct {
	// FlushInterval is how often the buffered values are sent to the backend.
	// Zero means DefaultFlushInterval.
	FlushInterval time.Duration
}

// Buffer collects metrics from any number of goroutines and sends them to a backend
// at most once per flush interval, so that a hot loop can record figures on every
// iteration without paying for a network call or the backend's locking.
//
// Counters are summed per name and tag set. Timings are summed the same way and sent
// as one Timing per flush carrying the total time of the interval (Arroyo's meaning
// of consumer.poll.time and friends: time spent per interval, not per event). Gauges
// keep the last value set. A series whose sum is zero, or a gauge not set since the
// last flush, is not sent. Tag order does not matter.
//
// Writers never take a lock once a series has been seen: they find it through a
// read-only map published with an atomic pointer and add to one of several
// cache-line-sized counters with an atomic operation. A flush swaps every counter
// to zero, so each write is sent exactly once. The backend is called only by the
// flushing goroutine, under a mutex that serialises flushes (so gauges arrive in
// order) and that writers never touch: a slow backend delays flushes, not writers.
type Buffer struct {
	backend    Metrics
	stripeMask uint32

	// series is replaced, never modified, so readers need no lock. addMu
	// serialises the copy-on-write that adds a series.
	series atomic.Pointer[map[string]*series]
	addMu  sync.Mutex
	cache  lookupCache

	// flushMu serialises flushes and owns pending, the reused list of values to send.
	flushMu sync.Mutex
	pending []sample

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// series is one name and tag set. Counters and timings add into stripes, gauges
// store into gauge.
type series struct {
	kind    kind
	name    string
	tags    []Tag
	stripes []paddedInt64
	gauge   atomic.Uint64
}

// paddedInt64 fills a cache line so that goroutines adding to different stripes do
// not take the line from each other.
type paddedInt64 struct {
	v atomic.Int64
	_ [56]byte
}

type sample struct {
	s *series
	n int64
	f float64
}

// gaugeUnset marks a gauge with nothing to send. It is a NaN that Gauge never stores,
// because Gauge turns every NaN into math.NaN().
const gaugeUnset = 0x7ff4_0000_0000_dead

// maxStripes bounds the memory of one series (64 bytes per stripe).
const maxStripes = 64

// NewBuffer returns a Buffer that sends to backend and starts the goroutine that
// flushes it. Call Close to stop that goroutine and send what is left.
func NewBuffer(backend Metrics, cfg BufferConfig) (*Buffer, error) {
	if backend == nil {
		return nil, errors.New("metrics: NewBuffer needs a backend; pass metrics.Noop{} to discard")
	}
	// One field, checked here in the wording of internal/defaults: metrics is the
	// one creek package the span store may import, so it imports none itself.
	switch {
	case cfg.FlushInterval < 0:
		return nil, fmt.Errorf("metrics: BufferConfig.FlushInterval is %v; set it > 0, or leave it 0 for %v", cfg.FlushInterval, DefaultFlushInterval)
	case cfg.FlushInterval == 0:
		cfg.FlushInterval = DefaultFlushInterval
	}
	// Four times as many stripes as threads that can run at once keeps collisions
	// between concurrent writers of one series rare.
	stripes := min(maxStripes, 1<<bits.Len(uint(4*runtime.GOMAXPROCS(0)-1)))
	b := &Buffer{
		backend:    backend,
		stripeMask: uint32(stripes - 1),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	empty := map[string]*series{}
	b.series.Store(&empty)
	go b.run(cfg.FlushInterval)
	return b, nil
}

func (b *Buffer) run(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			b.Flush()
		case <-b.stop:
			return
		}
	}
}

// Increment adds value to a counter.
func (b *Buffer) Increment(name string, value int64, tags ...Tag) {
	b.lookup(kindCounter, name, tags).add(value)
}

// Timing adds d to the total time of name and tags in this interval.
func (b *Buffer) Timing(name string, d time.Duration, tags ...Tag) {
	b.lookup(kindTiming, name, tags).add(int64(d))
}

// Counter returns the counter of name and tags, looked up once, for a writer that
// adds to one series so often that even the lookup cache's cost shows.
func (b *Buffer) Counter(name string, tags ...Tag) Counter {
	return Counter{b.lookup(kindCounter, name, tags)}
}

// Timer returns the timing of name and tags, looked up once; see Counter.
func (b *Buffer) Timer(name string, tags ...Tag) Timer {
	return Timer{b.lookup(kindTiming, name, tags)}
}

// Counter is one counter series of a Buffer. Add is Buffer.Increment without the
// lookup, safe from any goroutine. The zero Counter discards what is added, so that
// a component can hold one before it has a Buffer.
type Counter struct{ s *series }

// Add adds n to the counter.
func (c Counter) Add(n int64) {
	if c.s != nil {
		c.s.add(n)
	}
}

// Timer is one timing series of a Buffer. Add is Buffer.Timing without the lookup,
// safe from any goroutine. The zero Timer discards what is added.
type Timer struct{ s *series }

// Add adds d to the total time of the series in this interval.
func (t Timer) Add(d time.Duration) {
	if t.s != nil {
		t.s.add(int64(d))
	}
}

// add adds n to the stripe of the calling goroutine.
func (s *series) add(n int64) {
	s.stripes[stripe()&uint32(len(s.stripes)-1)].v.Add(n)
}

// stripe picks the stripe a writer adds to from the address of its goroutine's stack:
// it stays the same while the goroutine runs, so a goroutine keeps adding to a cache
// line its core already holds, and different goroutines mostly land on different
// lines. A random pick would make two cores trade the same lines on almost every
// write. The address is only hashed; a stack that moves merely changes the stripe.
func stripe() uint32 {
	var marker byte
	h := uint64(uintptr(unsafe.Pointer(&marker))>>12) * 0x9e3779b97f4a7c15
	return uint32(h >> 32)
}

// Gauge sets a gauge; the last value set before a flush is sent.
func (b *Buffer) Gauge(name string, value float64, tags ...Tag) {
	if math.IsNaN(value) {
		value = math.NaN()
	}
	b.lookup(kindGauge, name, tags).gauge.Store(math.Float64bits(value))
}

// lookup finds the series of name and tags: first in the cache of recent callers,
// then in the map. The map key is built in a stack buffer and the map is indexed with
// string(key), which Go does without allocating.
func (b *Buffer) lookup(k kind, name string, tags []Tag) *series {
	if s := b.cache.get(k, name, tags); s != nil {
		return s
	}
	var buf [128]byte
	key := appendKey(buf[:0], k, name, tags)
	s, ok := (*b.series.Load())[string(key)]
	if !ok {
		s = b.add(key, k, name, tags)
	}
	b.cache.put(name, tags, s)
	return s
}

func (b *Buffer) add(key []byte, k kind, name string, tags []Tag) *series {
	b.addMu.Lock()
	defer b.addMu.Unlock()
	old := *b.series.Load()
	if s, ok := old[string(key)]; ok {
		return s
	}
	s := &series{kind: k, name: name, tags: normalizeTags(tags)}
	if k == kindGauge {
		s.gauge.Store(gaugeUnset)
	} else {
		s.stripes = make([]paddedInt64, b.stripeMask+1)
	}
	next := make(map[string]*series, len(old)+1)
	for key, s := range old {
		next[key] = s
	}
	next[string(key)] = s
	b.series.Store(&next)
	return s
}

// Flush sends everything recorded since the last flush to the backend and returns
// when the backend has taken it. Writers are not held up while it runs.
func (b *Buffer) Flush() {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	out := b.pending[:0]
	for _, s := range *b.series.Load() {
		if s.kind == kindGauge {
			if v := s.gauge.Swap(gaugeUnset); v != gaugeUnset {
				out = append(out, sample{s: s, f: math.Float64frombits(v)})
			}
			continue
		}
		var sum int64
		for i := range s.stripes {
			sum += s.stripes[i].v.Swap(0)
		}
		if sum != 0 {
			out = append(out, sample{s: s, n: sum})
		}
	}
	for _, e := range out {
		switch e.s.kind {
		case kindCounter:
			b.backend.Increment(e.s.name, e.n, e.s.tags...)
		case kindTiming:
			b.backend.Timing(e.s.name, time.Duration(e.n), e.s.tags...)
		case kindGauge:
			b.backend.Gauge(e.s.name, e.f, e.s.tags...)
		}
	}
	clear(out)
	b.pending = out[:0]
}

// ForgetGauge drops the gauge series of name and tags: a value set and not yet
// flushed is not sent, and a backend that keeps series (GaugeForgetter) drops it.
// It is ordered with flushes, so a value flushed before it does not come back.
func (b *Buffer) ForgetGauge(name string, tags ...Tag) {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	var buf [128]byte
	if s, ok := (*b.series.Load())[string(appendKey(buf[:0], kindGauge, name, tags))]; ok {
		s.gauge.Store(gaugeUnset)
	}
	if f, ok := b.backend.(GaugeForgetter); ok {
		f.ForgetGauge(name, tags...)
	}
}

// Close stops the flushing goroutine and flushes what is left. It is safe to call more
// than once and from several goroutines; every call returns after the final flush.
// Values recorded after Close are sent only by an explicit Flush.
func (b *Buffer) Close() {
	b.closeOnce.Do(func() {
		close(b.stop)
		<-b.done
		b.Flush()
	})
}
