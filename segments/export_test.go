package segments

// CurrentFlusher returns the flusher of the chain f built last, for tests.
func CurrentFlusher(f *Factory) *Flusher[int] {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.current
}
