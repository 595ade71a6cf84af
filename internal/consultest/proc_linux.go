//go:build linux

package consultest

import "syscall"

// setParentDeathSignal makes the kernel kill the agent if the test binary
// dies without cleaning up (a panic, a -timeout kill), so no agent outlives
// the tests.
func setParentDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
