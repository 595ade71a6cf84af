package auth

import (
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// fileSet holds a value parsed from one or more files and reloads it lazily: a caller of get
// that finds the last check older than the interval stats the files (one caller at a time;
// the others keep the current value) and re-reads and re-parses them when any changed (path
// now names another file, or its size or modification time differ). A new content that fails
// to parse keeps the last good value and is reported once per change. No goroutine.
type fileSet[T any] struct {
	paths    []string                       // immutable
	parse    func(data [][]byte) (T, error) // immutable
	interval time.Duration                  // immutable
	onError  func(error)                    // immutable; may be nil
	cur      atomic.Pointer[fileSnap[T]]
	mu       sync.Mutex // held while checking or reloading
}

type fileSnap[T any] struct {
	val     T
	stats   []os.FileInfo
	checked time.Time
}

func newFileSet[T any](paths []string, interval time.Duration, parse func([][]byte) (T, error), onError func(error)) (*fileSet[T], error) {
	f := &fileSet[T]{paths: paths, parse: parse, interval: interval, onError: onError}
	stats, data, err := f.read()
	if err != nil {
		return nil, err
	}
	v, err := parse(data)
	if err != nil {
		return nil, err
	}
	f.cur.Store(&fileSnap[T]{val: v, stats: stats, checked: time.Now()})
	return f, nil
}

func (f *fileSet[T]) read() ([]os.FileInfo, [][]byte, error) {
	stats := make([]os.FileInfo, len(f.paths))
	data := make([][]byte, len(f.paths))
	for i, p := range f.paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil, err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		stats[i], data[i] = st, b
	}
	return stats, data, nil
}

func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// get returns the current value, reloading it first when due.
func (f *fileSet[T]) get() T {
	s := f.cur.Load()
	if time.Since(s.checked) < f.interval || !f.mu.TryLock() {
		return s.val
	}
	v, err := f.reloadLocked()
	f.mu.Unlock()
	if err != nil && f.onError != nil {
		f.onError(err) // outside the lock
	}
	return v
}

func (f *fileSet[T]) reloadLocked() (T, error) {
	s := f.cur.Load()
	now := time.Now()
	if now.Sub(s.checked) < f.interval {
		return s.val, nil
	}
	changed := false
	for i, p := range f.paths {
		st, err := os.Stat(p)
		if err != nil || !sameFile(st, s.stats[i]) {
			changed = true
			break
		}
	}
	if !changed {
		f.cur.Store(&fileSnap[T]{val: s.val, stats: s.stats, checked: now})
		return s.val, nil
	}
	stats, data, err := f.read()
	if err == nil {
		var v T
		if v, err = f.parse(data); err == nil {
			f.cur.Store(&fileSnap[T]{val: v, stats: stats, checked: now})
			return v, nil
		}
	}
	// Keep the last good value. Remember the new stats (when we have them) so a file that stays
	// bad is reported once, not at every interval.
	if stats == nil {
		stats = s.stats
	}
	f.cur.Store(&fileSnap[T]{val: s.val, stats: stats, checked: now})
	return s.val, err
}
