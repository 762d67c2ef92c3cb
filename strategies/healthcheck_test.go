package strategies

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestHealthcheckTouchesFileOncePerSecond(t *testing.T) {
	clock := newManualClock()
	m := newCountMetrics()
	path := filepath.Join(t.TempDir(), "alive")
	live, err := NewLiveness(LivenessConfig{Path: path}, WithClock(clock.now), WithMetrics(m))
	if err != nil {
		t.Fatalf("NewLiveness: %v", err)
	}
	next := &recorder[string]{}
	h := NewHealthcheck[string](live, next)

	steps := []struct {
		name      string
		advance   time.Duration
		wantMtime time.Duration // since the clock's start
		wantTouch int64
	}{
		{"first poll creates the file", 0, 0, 1},
		{"within the second: no touch", 999 * time.Millisecond, 0, 1},
		{"a second after the last touch", time.Millisecond, time.Second, 2},
		{"and again", 1500 * time.Millisecond, 2500 * time.Millisecond, 3},
	}
	start := clock.now()
	for i, st := range steps {
		clock.advance(st.advance)
		poll(t, h)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if want := start.Add(st.wantMtime); !fi.ModTime().Equal(want) {
			t.Fatalf("%s: mtime %v, want %v", st.name, fi.ModTime(), want)
		}
		if got := m.counter("strategies.healthcheck.touch"); got != st.wantTouch {
			t.Fatalf("%s: strategies.healthcheck.touch = %d, want %d", st.name, got, st.wantTouch)
		}
		if next.polls != i+1 {
			t.Fatalf("%s: next polled %d times, want %d", st.name, next.polls, i+1)
		}
	}
}

func TestHealthcheckHandler(t *testing.T) {
	clock := newManualClock()
	live, err := NewLiveness(LivenessConfig{Window: 3 * time.Second}, WithClock(clock.now))
	if err != nil {
		t.Fatalf("NewLiveness: %v", err)
	}
	h := NewHealthcheck[string](live, &recorder[string]{})

	status := func() int {
		rec := httptest.NewRecorder()
		h.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code
	}
	if got := status(); got != http.StatusServiceUnavailable {
		t.Fatalf("before any poll: status %d, want 503", got)
	}
	poll(t, h)
	tests := []struct {
		name    string
		advance time.Duration
		want    int
	}{
		{"just polled", 0, http.StatusOK},
		{"at the window's end", 3 * time.Second, http.StatusOK},
		{"past the window", time.Millisecond, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		clock.advance(tt.advance)
		if got := status(); got != tt.want {
			t.Fatalf("%s: status %d, want %d", tt.name, got, tt.want)
		}
	}
	poll(t, h)
	if got := status(); got != http.StatusOK {
		t.Fatalf("after polling again: status %d, want 200", got)
	}
}

func TestHealthcheckPassesThrough(t *testing.T) {
	live, err := NewLiveness(LivenessConfig{})
	if err != nil {
		t.Fatalf("NewLiveness: %v", err)
	}
	next := &recorder[string]{}
	h := NewHealthcheck[string](live, next)
	submitAll(t, h, brokerMsg("a", tp0, 0))
	checkPayloads(t, next, "a")
	if err := h.Join(doneCtx()); err != nil {
		t.Fatalf("Join = %v", err)
	}
	if !next.joined {
		t.Fatal("next step not joined")
	}
	h.Terminate()
	if !next.terminated {
		t.Fatal("next step not terminated")
	}
}

func TestNewLivenessRejectsNegativeWindow(t *testing.T) {
	if _, err := NewLiveness(LivenessConfig{Window: -time.Second}); err == nil {
		t.Fatal("NewLiveness with a negative window succeeded, want an error")
	}
}

func TestHealthcheckHandlerServesWhileLoopPolls(t *testing.T) {
	live, err := NewLiveness(LivenessConfig{Path: filepath.Join(t.TempDir(), "alive")})
	if err != nil {
		t.Fatalf("NewLiveness: %v", err)
	}
	h := NewHealthcheck[string](live, &recorder[string]{})
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()

	// The loop polls on its goroutine while the probe reads over HTTP; -race checks
	// that they share nothing unguarded.
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for range 200 {
			_ = h.Poll()
		}
	}()
	get := func() *http.Response {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		resp.Body.Close()
		return resp
	}
	for range 5 {
		get() // the status depends on how far the loop got
	}
	mustCloseWithin(t, polled, "the polling goroutine")
	if resp := get(); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d after polling, want 200", resp.StatusCode)
	}
}
