//go:build !unix

package redistest

import "errors"

// errNoPause is the error of Pause and Resume where there are no job-control signals.
var errNoPause = errors.New("redistest: Pause and Resume need SIGSTOP and SIGCONT (unix only)")

// Pause would stop the process; on this system it cannot, and fails.
func (s *Server) Pause() error { return errNoPause }

// Resume would continue a paused server; on this system it fails.
func (s *Server) Resume() error { return errNoPause }
