//go:build !unix

package consultest

import "os"

// alive reports whether process pid exists: on Windows, opening it fails once it has exited
// and been waited for.
func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	_ = p.Release()
	return true
}
