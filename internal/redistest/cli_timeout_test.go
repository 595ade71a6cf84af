package redistest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/proxyless/proxyless/internal/testenv"
)

// A redis-cli that never returns (--cluster create waiting for nodes that never agree, a
// command to a paused node) is killed after cliTimeout: StartCluster fails instead of
// hanging the test binary.
func TestStartClusterWithAHungCLI(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		testenv.Unavailable(t, err)
		return
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "redis-server")
	if err := os.Symlink(bin, fake); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "redis-cli"), []byte("#!/bin/sh\nexec sleep 600\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	old := cliTimeout
	cliTimeout = 300 * time.Millisecond
	t.Cleanup(func() { cliTimeout = old })

	done := make(chan error, 1)
	go func() {
		c, err := StartCluster(fake, 3, 0)
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("StartCluster succeeded with a redis-cli that never returns")
		}
		t.Log(err)
	case <-time.After(20 * time.Second):
		t.Fatal("StartCluster still waits on a hung redis-cli after 20s")
	}
}
