package redistest

import (
	"net"
	"os"
	"strconv"
	"testing"

	"github.com/proxyless/proxyless/internal/testenv"
)

// A cluster node whose port is above 55535 (a quarter of Linux's ephemeral range, which
// FreePort draws from) starts: its cluster bus has a port of its own, where by default
// redis-server would put it at port+10000, out of range, and refuse to start.
func TestClusterNodeOnAHighPort(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		testenv.Unavailable(t, err)
		return
	}
	port := 0
	for p := 55536; p <= 60999 && port == 0; p += 97 {
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			_ = l.Close()
			port = p
		}
	}
	if port == 0 {
		t.Fatal("no free port above 55535")
	}
	args, err := clusterNodeArgs()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{bin: bin, port: port, dir: dir, extra: args}
	defer s.Close()
	if err := s.start(); err != nil {
		t.Fatalf("a cluster node on port %d: %v", port, err)
	}
}
