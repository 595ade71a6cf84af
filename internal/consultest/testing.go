package consultest

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/proxyless/proxyless/internal/testenv"
)

// logTailOnFailure is how much of the agent's output a failed test prints.
const logTailOnFailure = 16 << 10

// ForTest starts an agent of the test's own (see [Start]) and closes it at
// the test's cleanup, printing the end of its output if the test failed.
// Without a consul binary it calls [testenv.Unavailable]: the test skips, or
// fails under CI=true.
func ForTest(tb testing.TB) *Agent {
	tb.Helper()
	return ForTestHCL(tb)
}

// ForTestHCL is ForTest with extra agent configuration, as [StartHCL] takes it.
func ForTestHCL(tb testing.TB, hcl ...string) *Agent {
	tb.Helper()
	bin, err := testenv.ConsulBinary()
	if err != nil {
		testenv.Unavailable(tb, err)
		return nil // only reached with a testing.TB that does not stop the test
	}
	a, err := StartHCL(bin, hcl...)
	if err != nil {
		tb.Fatalf("%v", err)
		return nil
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("consul output (tail):\n%s", a.logs.tail(logTailOnFailure))
		}
		if err := a.Close(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return a
}

// TestingM is what [Shared.Wrap] wraps: *testing.M, or a wrapper of it. It
// matches goleak.TestingM, so the two compose.
type TestingM interface {
	Run() int
}

// Shared is one agent shared by the tests of a package. Declare it as a
// package variable and hand TestMain's m to [Shared.Main] or [Shared.Wrap];
// tests then get the agent from [Shared.Agent]. The agent starts on the
// first call to Agent, so a run whose tests do not need it (go test -run)
// does not pay for it, and stops when the tests end.
//
// The zero value is ready to use. Its methods are safe for concurrent use.
// Tests that Stop the shared agent must Restart it before they end.
type Shared struct {
	mu      sync.Mutex
	running bool   // guarded by mu; inside Run
	binErr  error  // guarded by mu; no usable binary
	agent   *Agent // guarded by mu; started on first use
	err     error  // guarded by mu; the start error, returned to every later test
}

// Main runs the tests with the shared agent available and returns the exit
// code for os.Exit. Under CI=true a missing consul binary is reported on
// stderr and Main returns 1 without running the tests; elsewhere the tests
// run and those asking for the agent skip.
func (s *Shared) Main(m TestingM) int { return s.Wrap(m).Run() }

// Wrap returns a TestingM whose Run does what [Shared.Main] does. Use it to
// combine with goleak: goleak.VerifyTestMain(shared.Wrap(m)); the agent is
// closed before goleak looks for leaked goroutines.
func (s *Shared) Wrap(m TestingM) TestingM { return runner{s: s, m: m} }

type runner struct {
	s *Shared
	m TestingM
}

func (r runner) Run() int {
	s := r.s
	_, binErr := testenv.ConsulBinary()
	if binErr != nil && testenv.Required() {
		fmt.Fprintf(os.Stderr, "consultest: %v (required under %s=true)\n", binErr, testenv.CIEnv)
		return 1
	}
	s.mu.Lock()
	s.running, s.binErr, s.agent, s.err = true, binErr, nil, nil
	s.mu.Unlock()

	code := r.m.Run()

	s.mu.Lock()
	a := s.agent
	s.running, s.agent = false, nil
	s.mu.Unlock()
	if a != nil {
		if err := a.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "consultest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// errNotWired is the failure of Agent called outside Main or Wrap.
var errNotWired = errors.New("consultest: Shared.Agent called outside TestMain's Shared.Main or Shared.Wrap")

// Agent returns the shared agent, starting it on first use. Without a consul
// binary it calls [testenv.Unavailable] (skip, or fail under CI=true); if
// the agent cannot start, it fails this test and every later caller.
func (s *Shared) Agent(tb testing.TB) *Agent {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.running:
		tb.Fatalf("%v", errNotWired)
		return nil
	case s.binErr != nil:
		testenv.Unavailable(tb, s.binErr)
		return nil
	case s.agent != nil:
		return s.agent
	case s.err != nil:
		tb.Fatalf("shared agent did not start: %v", s.err)
		return nil
	}
	bin, err := testenv.ConsulBinary()
	if err != nil {
		s.binErr = err
		testenv.Unavailable(tb, err)
		return nil
	}
	s.agent, s.err = Start(bin)
	if s.err != nil {
		tb.Fatalf("%v", s.err)
		return nil
	}
	return s.agent
}
