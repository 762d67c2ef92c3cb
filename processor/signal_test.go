package processor

import (
	"context"
	"syscall"
	"testing"
	"time"
)

func TestSignalContextCancelsThenExits(t *testing.T) {
	exited := make(chan int, 1)
	ctx, stop := signalContext(context.Background(), func(code int) { exited <- code }, syscall.SIGUSR1)
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("timed out after 10s waiting for the first signal to cancel the context")
	}
	select {
	case code := <-exited:
		t.Fatalf("exited with %d after the first signal", code)
	default:
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timed out after 10s waiting for the second signal to exit")
	}
}

func TestSignalContextStopReleases(t *testing.T) {
	ctx, stop := signalContext(context.Background(), func(int) { t.Error("exit called") }, syscall.SIGUSR2)
	stop()
	stop() // safe twice
	if ctx.Err() == nil {
		t.Fatal("stop did not cancel the context")
	}
}
