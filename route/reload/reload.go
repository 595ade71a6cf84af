package reload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/internal/backoff"
	"github.com/proxyless/proxyless/route"
)

// Result reports one attempt by a reloader to load a new table.
type Result struct {
	// Source says where the document came from: "file:<path>" or "consul:<key>".
	Source string
	// Version is the Target's version after a successful load; 0 when Err is set.
	Version uint64
	// Err is why the document was refused (or could not be read); the current table stays.
	Err error
}

// Option configures [File] and [Consul].
type Option interface {
	apply(*options)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	logger *slog.Logger
	hook   func(Result)
}

func newOptions(opts []Option) *options {
	o := &options{}
	for _, opt := range opts {
		if opt != nil {
			opt.apply(o)
		}
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// WithLogger makes the reloader log refused and applied configs to l. Default: no logging.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = l })
}

// WithHook makes the reloader report every load attempt, good or bad, to fn (called without
// locks, from the reloader's goroutine). Default: none.
func WithHook(fn func(Result)) Option {
	return optionFunc(func(o *options) { o.hook = fn })
}

// Target is what a reloader loads documents into: a [route.Router] (a route table), or a
// middleware.Config (a route table and the policies of each destination). Load must refuse
// an invalid document and keep what it had; Version counts the documents it took.
type Target interface {
	Load(data []byte) error
	Version() uint64
}

var _ Target = (*route.Router)(nil)

// reloader is what file and Consul watchers share: applying a document and reporting.
type reloader struct {
	r      Target
	o      *options
	source string

	last []byte // guarded by being used from one goroutine only; the last document applied
}

func (l *reloader) apply(data []byte) {
	if l.last != nil && bytes.Equal(data, l.last) {
		return
	}
	err := l.r.Load(data)
	if err == nil {
		l.last = bytes.Clone(data)
	}
	l.report(err)
}

func (l *reloader) report(err error) {
	res := Result{Source: l.source, Err: err}
	if err != nil {
		l.o.logger.Warn("reload: config refused; keeping the current table", "source", l.source, "error", err)
	} else {
		res.Version = l.r.Version()
		l.o.logger.Info("reload: config loaded", "source", l.source, "version", res.Version)
	}
	if l.o.hook != nil {
		l.o.hook(res)
	}
}

// FileWatcher reloads a Target (a Router) from a YAML or JSON file whenever it changes. It watches the
// file's directory, so editors that replace the file and Kubernetes ConfigMap symlink swaps
// are seen; a document equal to the last one applied is skipped. A bad or missing file is
// reported (through [WithLogger] and [WithHook]) and the current table stays.
// Close stops it; it is safe for concurrent use.
type FileWatcher struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	w      *fsnotify.Watcher
}

// fileDebounce gathers the bursts of events one save makes.
const fileDebounce = 50 * time.Millisecond

// File loads path into r and keeps it loaded as the file changes. It returns an error, and
// watches nothing, if the file cannot be read or is invalid at the start, or its directory
// cannot be watched. Tables are compiled with the Router's own options.
func File(r Target, path string, opts ...Option) (*FileWatcher, error) {
	if r == nil {
		return nil, errors.New("reload: file: nil router")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("reload: config file: %w", err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("reload: config file: %w", err)
	}
	l := &reloader{r: r, o: newOptions(opts), source: "file:" + abs}
	if err := r.Load(data); err != nil {
		return nil, err
	}
	l.last = data
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("reload: config file: %w", err)
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		w.Close()
		return nil, fmt.Errorf("reload: config file: watch directory: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fw := &FileWatcher{cancel: cancel, done: make(chan struct{}), w: w}
	go fw.run(ctx, l, abs)
	return fw, nil
}

func (fw *FileWatcher) run(ctx context.Context, l *reloader, path string) {
	defer close(fw.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-fw.w.Events:
			if !ok {
				return
			}
			// Any change in the directory may be the file (renames, symlink swaps): reload
			// after the burst and let the content comparison skip non-changes.
			timer.Reset(fileDebounce)
		case err, ok := <-fw.w.Errors:
			if !ok {
				return
			}
			l.o.logger.Warn("reload: watching config file", "source", l.source, "error", err)
		case <-timer.C:
			data, err := os.ReadFile(path)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) && l.last == nil {
					continue
				}
				l.report(fmt.Errorf("reload: config file: %w", err))
				continue
			}
			l.apply(data)
		}
	}
}

// Close stops watching and waits for the watcher's goroutine. It is idempotent.
func (fw *FileWatcher) Close() error {
	var err error
	fw.once.Do(func() {
		fw.cancel()
		err = fw.w.Close()
		<-fw.done
	})
	return err
}

// ConsulWatcher reloads a Target (a Router) from a Consul KV key with blocking queries. A bad document,
// a missing key or an unreachable agent is reported (through [WithLogger] and [WithHook]) and
// the current table stays; errors are retried with jittered backoff.
// Close stops it; it is safe for concurrent use.
type ConsulWatcher struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Consul retry backoff bounds.
const (
	consulBackoffBase = 100 * time.Millisecond
	consulBackoffMax  = 10 * time.Second
	consulWait        = 5 * time.Minute
)

// Consul follows key in client's KV store and loads each new value into r. It does not block
// on the network: the first value is loaded by the watcher's goroutine; wait for it with
// [WithHook] or [route.Router.Version]. Tables are compiled with the Router's own options.
func Consul(r Target, client *api.Client, key string, opts ...Option) (*ConsulWatcher, error) {
	if r == nil {
		return nil, errors.New("reload: consul: nil router")
	}
	if client == nil {
		return nil, errors.New("reload: consul: nil client")
	}
	if key == "" {
		return nil, errors.New("reload: consul: empty key")
	}
	l := &reloader{r: r, o: newOptions(opts), source: "consul:" + key}
	ctx, cancel := context.WithCancel(context.Background())
	cw := &ConsulWatcher{cancel: cancel, done: make(chan struct{})}
	go cw.run(ctx, l, client.KV(), key)
	return cw, nil
}

func (cw *ConsulWatcher) run(ctx context.Context, l *reloader, kv *api.KV, key string) {
	defer close(cw.done)
	var index, modify uint64
	failures := 0
	missingReported := false
	for {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: consulWait}).WithContext(ctx)
		pair, meta, err := kv.Get(key, q)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.report(fmt.Errorf("reload: consul: %w", err))
			failures++
			if !backoff.Sleep(ctx, backoff.FullJitter(consulBackoffBase, consulBackoffMax, failures)) {
				return
			}
			continue
		}
		failures = 0
		switch {
		case meta.LastIndex < index:
			index = 0 // the index went backwards (a restored snapshot): start over
		default:
			index = meta.LastIndex
		}
		if pair == nil {
			if !missingReported {
				missingReported = true
				l.report(fmt.Errorf("reload: consul: key %q not found", key))
			}
			modify = 0
			continue
		}
		missingReported = false
		if pair.ModifyIndex == modify {
			continue
		}
		modify = pair.ModifyIndex
		l.apply(pair.Value)
	}
}

// Close stops the watch, cancelling the blocking query, and waits for the goroutine. It is
// idempotent and returns nil.
func (cw *ConsulWatcher) Close() error {
	cw.once.Do(func() {
		cw.cancel()
		<-cw.done
	})
	return nil
}
