package feed

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/proxyless/proxyless/discovery"
)

func eps(addrs ...string) []discovery.Endpoint {
	out := make([]discovery.Endpoint, len(addrs))
	for i, a := range addrs {
		out[i] = discovery.Endpoint{Addr: a}
	}
	return out
}

func TestEmptyNeedsAnswersOrGrace(t *testing.T) {
	t0 := time.Unix(1000, 0)
	f := New(3, 10*time.Second)
	if !f.Publish(eps("a:1"), 1, t0) {
		t.Fatal("first set refused")
	}
	if f.Publish(nil, 2, t0) || f.Publish(nil, 2, t0.Add(time.Second)) {
		t.Fatal("empty believed too soon")
	}
	if !f.Status().Stale {
		t.Fatal("not stale while doubting an empty answer")
	}
	if got := f.EmptyGraceLeft(t0.Add(4 * time.Second)); got != 6*time.Second {
		t.Fatalf("grace left %v, want 6s", got)
	}
	if f.Publish(nil, 3, t0.Add(2*time.Second)) {
		t.Fatal("two distinct empty answers believed") // the repeat of id 2 did not count
	}
	if !f.Publish(nil, 4, t0.Add(3*time.Second)) {
		t.Fatal("third distinct empty answer not believed")
	}
	if f.Status().Stale || f.EmptyGraceLeft(t0) != 0 {
		t.Fatal("still stale after believing")
	}

	g := New(100, 10*time.Second)
	g.Publish(eps("a:1"), 1, t0)
	g.Publish(nil, 2, t0)
	if !g.Publish(nil, 2, t0.Add(10*time.Second)) {
		t.Fatal("grace period over, empty not believed")
	}
}

func TestNextAndFail(t *testing.T) {
	f := New(1, time.Second)
	done := make(chan struct{})
	var seen uint64
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.Next(ctx, &seen, done); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next before any set: %v", err)
	}
	f.Publish(eps("a:1"), 1, time.Now())
	got, err := f.Next(context.Background(), &seen, done)
	if err != nil || len(got) != 1 {
		t.Fatalf("Next = %v, %v", got, err)
	}
	f.Publish(eps("a:1"), 2, time.Now()) // same set: no new version
	f.Fail(errors.New("boom"), time.Now())
	if st := f.Status(); !st.Stale || st.LastError == nil {
		t.Fatalf("status after Fail: %+v", st)
	}
	close(done)
	if _, err := f.Next(context.Background(), &seen, done); !errors.Is(err, discovery.ErrClosed) {
		t.Fatalf("Next after done: %v", err)
	}
}
