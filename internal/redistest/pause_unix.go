//go:build unix

package redistest

import "syscall"

// Pause stops the process with SIGSTOP: connections stay open but nothing
// answers, which is how a slow or hung Redis looks to a client. Resume
// undoes it.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }
