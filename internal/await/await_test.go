package await

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestUntilWakesOnNotify(t *testing.T) {
	var n Notifier
	var v atomic.Int32
	go func() {
		for i := 0; i < 3; i++ {
			v.Add(1)
			n.Notify()
		}
	}()
	Until(t, &n, 10*time.Second, "three notifications", func() bool { return v.Load() == 3 })
}

func TestUntilFailsAfterTimeout(t *testing.T) {
	var n Notifier
	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Until(ft, &n, time.Millisecond, "never", func() bool { return false })
	}()
	<-done
	if !ft.failed {
		t.Fatal("Until returned without failing for a condition that never holds")
	}
}

// fakeT records Fatalf instead of stopping the test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(string, ...any) {
	f.failed = true
	runtime.Goexit()
}
