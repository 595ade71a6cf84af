package breaker

import (
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
)

// State is the state of a Breaker.
type State uint8

const (
	// StateClosed lets every call through and counts outcomes.
	StateClosed State = iota
	// StateOpen refuses every call until its open delay has passed.
	StateOpen
	// StateHalfOpen lets a bounded number of probe calls through at a time.
	StateHalfOpen
)

func (s State) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateOpen:
		return "open"
	case StateHalfOpen:
		return "half-open"
	default:
		return "State(" + strconv.Itoa(int(s)) + ")"
	}
}

func stateOf(s circuitbreaker.State) State {
	switch s {
	case circuitbreaker.OpenState:
		return StateOpen
	case circuitbreaker.HalfOpenState:
		return StateHalfOpen
	default:
		return StateClosed
	}
}

// StateChange describes one transition of a Breaker, as passed to the OnStateChange callback.
type StateChange struct {
	// Key is the Set key of the breaker, or "" for a breaker made by New.
	Key      string
	From, To State
}

// An Option changes how New and NewSet build breakers.
type Option interface {
	apply(*options)
}

type options struct {
	onChange func(StateChange)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// OnStateChange calls fn after every state transition. fn is never called while a lock is held,
// so it may call back into the breaker; it runs on the goroutine whose call caused the transition
// (Allow, Done or State), so it should be quick. Transitions of one breaker can be reported from
// several goroutines at once and so arrive out of order; State gives the current state.
func OnStateChange(fn func(StateChange)) Option {
	return optionFunc(func(o *options) { o.onChange = fn })
}

// The state word packs a generation, bumped on every transition, with the current State.
const (
	stateBits = 2
	stateMask = 1<<stateBits - 1
)

// Breaker is a circuit breaker for one endpoint or destination. Callers ask Allow for a Permit
// before a call and report the call's Outcome through Permit.Done.
//
// A Breaker is made by New or by a Set; the zero value is not usable. It is safe for concurrent
// use. It starts no goroutines and holds no resources beyond memory, so it needs no Close: the
// move from open to half-open happens lazily, on the first Allow or State after the delay.
//
// It is built on a failsafe-go circuit breaker, which keeps the rolling window, decides the
// transitions, and counts half-open permits. Every call into it is made with the Breaker's own
// mutex held, so that the generation recorded in a Permit always names the failsafe-go state that
// issued it. In the closed state Allow takes no lock at all (failsafe-go's closed state grants
// every permit), and neither does the Done of a success while the window holds no failure (with
// the default count-based window: see recordQuiet); other outcomes take the mutex once, then
// failsafe-go records under its own.
type Breaker struct {
	// word is generation<<stateBits | State. Written only with mu held (from onTransition);
	// read without it on the hot path.
	word atomic.Uint64
	// openUntil is when the current open period ends, in nanoseconds since start. Written with
	// mu held, before word.
	openUntil atomic.Int64

	// quiet makes the common Done lock-free: see recordQuiet. It is quietValid |
	// uint32(generation)<<32 | n while the window of the closed state of that generation holds
	// no failure and n successes have been counted here without being recorded in failsafe-go;
	// 0 otherwise. Written with CompareAndSwap by Done, and with mu held by the slow path.
	quiet atomic.Uint64

	start    time.Time         // immutable; monotonic base for openUntil
	key      string            // immutable
	onChange func(StateChange) // immutable; may be nil
	// window is the size of a count-based window (MinimumVolume), or 0 for a time-based one
	// or one over maxQuietWindow, which get no lock-free path. Immutable.
	window uint64

	mu sync.Mutex
	// cb is only called with mu held, so its transitions, reported to onTransition from
	// inside those calls, and the generation in word happen as one sequence.
	cb circuitbreaker.CircuitBreaker[any]
	// probes is a bitmap of the half-open probe slots in flight in this round. Guarded by mu.
	probes []uint64
	// spare counts failsafe-go half-open permits held back from probes that ended with Ignore
	// (failsafe-go has no way to release a permit without recording a result); they are handed
	// to the next probes before failsafe-go is asked for more. Guarded by mu.
	spare int
	// pending is a transition to report once mu is released. Guarded by mu.
	pending    StateChange
	hasPending bool
}

// New returns a Breaker configured by cfg, or an error naming the first invalid field of cfg.
func New(cfg Config, opts ...Option) (*Breaker, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	return newBreaker(cfg, &o, ""), nil
}

// newBreaker builds a Breaker from a normalized Config.
func newBreaker(cfg Config, o *options, key string) *Breaker {
	b := &Breaker{
		start:    time.Now(),
		key:      key,
		onChange: o.onChange,
		probes:   make([]uint64, (cfg.HalfOpenProbes+63)/64),
	}
	if cfg.Window == 0 && cfg.MinimumVolume <= maxQuietWindow {
		b.window = uint64(cfg.MinimumVolume)
		b.quiet.Store(quietValid) // generation 0, closed, an empty window
	}
	b.cb = cfg.failsafe(b.onTransition)
	return b
}

// quietValid marks a quiet word that holds a generation and a count.
const quietValid = 1 << 31

// maxQuietWindow is the largest count-based window that gets the lock-free path: the first
// outcome after a run of successes records up to this many of them into failsafe-go, one call
// each, with the mutex held.
const maxQuietWindow = 1024

// recordQuiet records a success of a closed-state permit of generation gen without a lock,
// when it can, and reports whether it did.
//
// failsafe-go's count-based window holds the outcomes of the last MinimumVolume calls. While
// it holds no failure, another success changes nothing the breaker decides on except how many
// successes the window holds, which matters only once a failure comes, and then only up to
// MinimumVolume. So such successes are counted in quiet, up to MinimumVolume, and the slow
// path records them in failsafe-go, in a batch, before the next outcome it records: failsafe-go
// then sees exactly the window it would have seen. Once the count is full, a success costs two
// atomic loads. Time-based windows place each outcome in the bucket of its time, which a later
// batch would get wrong, so they always take the slow path, as do windows over maxQuietWindow.
func (b *Breaker) recordQuiet(gen uint64) bool {
	for {
		q := b.quiet.Load()
		if q&quietValid == 0 || uint32(q>>32) != uint32(gen) {
			return false
		}
		if q&(quietValid-1) >= b.window {
			return true
		}
		if b.quiet.CompareAndSwap(q, q+1) {
			return true
		}
		// Another success counted first: count again, still without the lock.
	}
}

// flushQuiet records in failsafe-go the successes counted in quiet for the current closed
// generation, and clears quiet so that Done takes the slow path until settleQuiet. Requires
// b.mu.
func (b *Breaker) flushQuiet() {
	q := b.quiet.Swap(0)
	if q&quietValid == 0 || uint32(q>>32) != uint32(b.word.Load()>>stateBits) {
		return
	}
	for range min(q&(quietValid-1), b.window) {
		b.cb.RecordSuccess()
	}
}

// settleQuiet re-arms the lock-free path when the breaker is closed and its window holds no
// failure. Requires b.mu.
func (b *Breaker) settleQuiet() {
	if b.window == 0 {
		return
	}
	w := b.word.Load()
	if State(w&stateMask) == StateClosed && b.cb.Metrics().Failures() == 0 {
		b.quiet.Store(quietValid | uint64(uint32(w>>stateBits))<<32)
	}
}

// Allow asks to make one call. When the breaker is closed, or half-open with a probe slot free,
// it returns a Permit whose Done must be called exactly once with the outcome of the call.
// Otherwise it returns an *OpenError, which matches ErrOpen with errors.Is.
//
// Allow does not block. A closed breaker admits without a lock and without allocating.
func (b *Breaker) Allow() (Permit, error) {
	w := b.word.Load()
	if State(w&stateMask) == StateClosed {
		return Permit{b: b, gen: w >> stateBits}, nil
	}
	return b.allowSlow(w)
}

func (b *Breaker) allowSlow(w uint64) (Permit, error) {
	if State(w&stateMask) == StateOpen {
		if rem := b.openUntil.Load() - b.now(); rem > 0 {
			return Permit{}, &OpenError{State: StateOpen, Remaining: time.Duration(rem)}
		}
	}
	b.mu.Lock()
	p, err := b.allowLocked()
	ev, ok := b.takePending()
	b.mu.Unlock()
	if ok {
		b.onChange(ev)
	}
	return p, err
}

// allowLocked requires b.mu.
func (b *Breaker) allowLocked() (Permit, error) {
	w := b.word.Load()
	switch State(w & stateMask) {
	case StateClosed:
		return Permit{b: b, gen: w >> stateBits}, nil
	case StateOpen:
		// Past the delay, failsafe-go moves to half-open (onTransition runs inside this
		// call) and hands out the first permit of the new round.
		if !b.cb.TryAcquirePermit() {
			return Permit{}, &OpenError{State: StateOpen, Remaining: b.cb.RemainingDelay()}
		}
		return b.takeProbe(), nil
	default: // StateHalfOpen
		if b.spare > 0 {
			b.spare--
			return b.takeProbe(), nil
		}
		if b.cb.TryAcquirePermit() {
			return b.takeProbe(), nil
		}
		return Permit{}, &OpenError{State: StateHalfOpen}
	}
}

// takeProbe turns a failsafe-go half-open permit into a Permit with a probe slot. Requires b.mu.
// A free slot always exists: slots in flight + spare + failsafe-go's free permits is the number
// of probes.
func (b *Breaker) takeProbe() Permit {
	w := b.word.Load()
	if State(w&stateMask) != StateHalfOpen {
		// Unreachable while every transition goes through onTransition.
		return Permit{b: b, gen: w >> stateBits}
	}
	for i, m := range b.probes {
		if m != ^uint64(0) {
			bit := bits.TrailingZeros64(^m)
			b.probes[i] |= 1 << bit
			return Permit{b: b, gen: w >> stateBits, probe: uint32(i*64+bit) + 1}
		}
	}
	panic("breaker: no free probe slot") // the invariant above is broken
}

// State returns the current state. When the open delay has passed it moves the breaker to
// half-open first, as Allow would.
func (b *Breaker) State() State {
	w := b.word.Load()
	s := State(w & stateMask)
	if s != StateOpen || b.openUntil.Load() > b.now() {
		return s
	}
	b.mu.Lock()
	if b.word.Load() == w && b.cb.RemainingDelay() == 0 {
		b.cb.HalfOpen()
	}
	s = State(b.word.Load() & stateMask)
	ev, ok := b.takePending()
	b.mu.Unlock()
	if ok {
		b.onChange(ev)
	}
	return s
}

func (b *Breaker) done(p Permit, o Outcome) {
	if p.probe == 0 {
		if o == Success && b.recordQuiet(p.gen) {
			return
		}
		if o != Success && o != Failure {
			return // an ignored closed-state call holds nothing
		}
	}
	b.mu.Lock()
	if b.word.Load()>>stateBits == p.gen {
		if b.window != 0 {
			b.flushQuiet()
			b.recordLocked(p, o)
			b.settleQuiet()
		} else {
			b.recordLocked(p, o)
		}
	}
	ev, ok := b.takePending()
	b.mu.Unlock()
	if ok {
		b.onChange(ev)
	}
}

// recordLocked records the outcome of a permit of the current generation. Requires b.mu.
func (b *Breaker) recordLocked(p Permit, o Outcome) {
	if p.probe != 0 {
		i, bit := (p.probe-1)/64, (p.probe-1)%64
		if b.probes[i]&(1<<bit) == 0 {
			return // Done called twice
		}
		b.probes[i] &^= 1 << bit
		if o != Success && o != Failure {
			b.spare++ // keep failsafe-go's permit for the next probe
			return
		}
	}
	if o == Failure {
		b.cb.RecordFailure()
	} else {
		b.cb.RecordSuccess()
	}
}

// onTransition is failsafe-go's state listener. failsafe-go calls it from inside a transition
// with its own mutex released; since b only calls failsafe-go with b.mu held, b.mu is held here.
func (b *Breaker) onTransition(e circuitbreaker.StateChangedEvent) {
	from, to := stateOf(e.OldState), stateOf(e.NewState)
	switch to {
	case StateOpen:
		b.openUntil.Store(b.now() + int64(b.cb.RemainingDelay()))
	case StateHalfOpen:
		b.spare = 0
		clear(b.probes)
	}
	gen := b.word.Load()>>stateBits + 1
	b.word.Store(gen<<stateBits | uint64(to))
	if to == StateClosed && b.window != 0 {
		b.quiet.Store(quietValid | uint64(uint32(gen))<<32) // failsafe-go starts a new, empty window
	} else {
		b.quiet.Store(0)
	}
	if b.onChange == nil {
		return
	}
	if b.hasPending {
		from = b.pending.From // never happens today: one transition per locked section
	}
	b.pending, b.hasPending = StateChange{Key: b.key, From: from, To: to}, true
}

// takePending returns the transition to report, if any. Requires b.mu.
func (b *Breaker) takePending() (StateChange, bool) {
	if !b.hasPending {
		return StateChange{}, false
	}
	ev := b.pending
	b.pending, b.hasPending = StateChange{}, false
	return ev, true
}

func (b *Breaker) now() int64 { return int64(time.Since(b.start)) }

// Permit is the right to make one call, returned by Allow. It is a small value: copy it freely,
// but call Done exactly once per Allow. The zero Permit's Done does nothing.
//
// A Permit remembers the generation of the state that issued it. If the breaker has changed state
// since (a call admitted while closed that ends after the breaker opened, or a probe of an earlier
// half-open round), Done drops the result.
type Permit struct {
	b     *Breaker
	gen   uint64
	probe uint32 // half-open probe slot + 1; 0 for a closed-state permit
}

// Done reports the outcome of the call. Success and Failure are recorded; Ignore (and any
// other value) records nothing and, for a half-open probe, frees its slot for the next caller.
// Done does not allocate.
func (p Permit) Done(o Outcome) {
	if p.b != nil {
		p.b.done(p, o)
	}
}

// Probe reports whether the Permit is for a half-open probe.
func (p Permit) Probe() bool { return p.probe != 0 }
