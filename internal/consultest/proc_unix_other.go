//go:build unix && !linux

package consultest

import "syscall"

func setParentDeathSignal(*syscall.SysProcAttr) {}
